package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

// Overflow policies for a full intake queue.
const (
	OverflowBlock = "block"
	OverflowDrop  = "drop"
)

// Config holds the pipeline's topics and knobs. Topic names and defaults are
// the seeds'.
type Config struct {
	EntryTopic         string        `env:"ENTRY_EVENT_TOPIC_NAME" envDefault:"customer/enter"`
	MoveTopic          string        `env:"MOVE_TOPIC" envDefault:"customer/move"`
	ExitTopic          string        `env:"EXIT_TOPIC" envDefault:"customer/exit"`
	FocusTopic         string        `env:"FOCUS_EVENT_TOPIC_NAME" envDefault:"customer/focus"`
	PredictionTopic    string        `env:"COUPON_PREDICTION_TOPIC_NAME" envDefault:"customer/prediction"`
	BrowsingTopic      string        `env:"BROWSING_TOPIC" envDefault:"customer/browsing"`
	FocusDwell         time.Duration `env:"FOCUS_DWELL" envDefault:"10s"`     // event time inside one department before a focus
	FocusGap           time.Duration `env:"FOCUS_GAP" envDefault:"20s"`       // a longer pause between moves restarts the dwell
	FocusCooldown      time.Duration `env:"FOCUS_COOLDOWN" envDefault:"10m"`  // staying this long after a focus allows another; 0 = never
	ShopperTTL         time.Duration `env:"SHOPPER_TTL" envDefault:"30m"`     // forget a shopper with no event for this long
	MaxShoppers        int           `env:"MAX_SHOPPERS" envDefault:"100000"` // shoppers tracked at once, at most
	DwellWorkers       int           `env:"DWELL_WORKERS" envDefault:"2"`     // dwell detector shards
	FocusWorkers       int           `env:"FOCUS_WORKERS" envDefault:"4"`     // workers per focus stage
	QueueSize          int           `env:"PIPELINE_QUEUE" envDefault:"1024"` // capacity of each intake queue
	Overflow           string        `env:"PIPELINE_OVERFLOW" envDefault:"block"`
	MaxProducts        int           `env:"PREDICTION_MAX_PRODUCTS" envDefault:"20"`     // products listed in a prediction, at most
	ShutdownTimeout    time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"10s"`           // at shutdown, how long queued and in-flight events may take to finish
	DedupWindow        int           `env:"FOCUS_DEDUP_WINDOW" envDefault:"10000"`       // focus events remembered to recognise one delivered again
	FirstCouponWait    time.Duration `env:"FIRST_COUPON_WAIT" envDefault:"1m"`           // after the first focus, how long until "no coupon yet" says why; 0 = never
	BrowsingAfter      time.Duration `env:"BROWSING_AFTER" envDefault:"30s"`             // event time on the move without a focus before a browsing event; 0 = off
	BrowsingMoves      int           `env:"BROWSING_MOVES" envDefault:"20"`              // moves to another position in that time, at least
	DwellState         string        `env:"DWELL_STATE" envDefault:"memory"`             // memory (one instance) or redis (several instances share state)
	ClaimTTL           time.Duration `env:"FOCUS_CLAIM_TTL" envDefault:"10s"`            // DWELL_STATE=redis: a focus claimed and not confirmed is free again after this
	ShareGroup         string        `env:"MQTT_SHARE_GROUP"`                            // subscribe to the intake topics as $share/<group>/<topic>; empty: plain
	CouponsPerDay      int           `env:"COUPONS_PER_SHOPPER_PER_DAY" envDefault:"3"`  // coupons a shopper gets per day (event time), at most; 0 = no cap
	DepartmentCooldown time.Duration `env:"COUPON_DEPARTMENT_COOLDOWN" envDefault:"12h"` // no second coupon in a department for a shopper within this (event time, across visits); 0 = off
}

// Validate checks the values; errors name the variable and the value.
func (c Config) Validate() error {
	var errs []error
	for _, t := range []struct{ name, v string }{
		{"ENTRY_EVENT_TOPIC_NAME", c.EntryTopic}, {"MOVE_TOPIC", c.MoveTopic}, {"EXIT_TOPIC", c.ExitTopic},
		{"FOCUS_EVENT_TOPIC_NAME", c.FocusTopic}, {"COUPON_PREDICTION_TOPIC_NAME", c.PredictionTopic},
		{"BROWSING_TOPIC", c.BrowsingTopic},
	} {
		if t.v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", t.name))
		}
	}
	for _, t := range []struct{ name, v string }{
		{"COUPON_PREDICTION_TOPIC_NAME", c.PredictionTopic}, {"BROWSING_TOPIC", c.BrowsingTopic},
	} {
		if t.v != "" && (t.v == c.FocusTopic || t.v == c.MoveTopic || t.v == c.EntryTopic || t.v == c.ExitTopic) {
			errs = append(errs, fmt.Errorf("%s=%q: must differ from the topics the pipeline consumes", t.name, t.v))
		}
	}
	if c.BrowsingTopic != "" && c.BrowsingTopic == c.PredictionTopic {
		errs = append(errs, fmt.Errorf("BROWSING_TOPIC=%q: must differ from COUPON_PREDICTION_TOPIC_NAME", c.BrowsingTopic))
	}
	if c.BrowsingAfter != 0 && c.BrowsingAfter < time.Second {
		errs = append(errs, fmt.Errorf("BROWSING_AFTER=%s: must be 0 (off) or at least 1s (event ts has whole seconds)", c.BrowsingAfter))
	}
	if c.FocusDwell < time.Second {
		errs = append(errs, fmt.Errorf("FOCUS_DWELL=%s: must be at least 1s (event ts has whole seconds)", c.FocusDwell))
	}
	if c.FocusGap < time.Second {
		errs = append(errs, fmt.Errorf("FOCUS_GAP=%s: must be at least 1s", c.FocusGap))
	}
	if c.FocusCooldown < 0 {
		errs = append(errs, fmt.Errorf("FOCUS_COOLDOWN=%s: must not be negative", c.FocusCooldown))
	}
	if c.ShopperTTL < time.Second {
		errs = append(errs, fmt.Errorf("SHOPPER_TTL=%s: must be at least 1s", c.ShopperTTL))
	}
	for _, n := range []struct {
		name     string
		v, lo, h int
	}{
		{"MAX_SHOPPERS", c.MaxShoppers, 1, 10_000_000}, {"DWELL_WORKERS", c.DwellWorkers, 1, 256},
		{"FOCUS_WORKERS", c.FocusWorkers, 1, 1024}, {"PIPELINE_QUEUE", c.QueueSize, 1, 1 << 20},
		{"PREDICTION_MAX_PRODUCTS", c.MaxProducts, 1, 100_000}, {"FOCUS_DEDUP_WINDOW", c.DedupWindow, 1, 1_000_000},
		{"BROWSING_MOVES", c.BrowsingMoves, 1, math.MaxUint16},
	} {
		if n.v < n.lo || n.v > n.h {
			errs = append(errs, fmt.Errorf("%s=%d: must be between %d and %d", n.name, n.v, n.lo, n.h))
		}
	}
	if c.FirstCouponWait < 0 {
		errs = append(errs, fmt.Errorf("FIRST_COUPON_WAIT=%s: must not be negative (0 turns it off)", c.FirstCouponWait))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("SHUTDOWN_TIMEOUT=%s: must be positive", c.ShutdownTimeout))
	}
	if c.DwellState != DwellStateMemory && c.DwellState != DwellStateRedis {
		errs = append(errs, fmt.Errorf("DWELL_STATE=%q: must be %q or %q", c.DwellState, DwellStateMemory, DwellStateRedis))
	}
	// A claim must outlast the slowest focus that still ends in a coupon
	// (central and predictor at their timeouts), and expire before the
	// confirmed focus keys it guards are forgotten.
	if c.ClaimTTL < time.Second {
		errs = append(errs, fmt.Errorf("FOCUS_CLAIM_TTL=%s: must be at least 1s", c.ClaimTTL))
	} else if c.DwellState == DwellStateRedis && c.ShopperTTL >= time.Second && c.ClaimTTL > c.ShopperTTL {
		errs = append(errs, fmt.Errorf("FOCUS_CLAIM_TTL=%s: must not exceed SHOPPER_TTL (%s) with DWELL_STATE=redis", c.ClaimTTL, c.ShopperTTL))
	}
	if c.CouponsPerDay < 0 || c.CouponsPerDay > 10_000 {
		errs = append(errs, fmt.Errorf("COUPONS_PER_SHOPPER_PER_DAY=%d: must be between 0 (no cap) and 10000", c.CouponsPerDay))
	}
	if c.DepartmentCooldown != 0 && (c.DepartmentCooldown < time.Second || c.DepartmentCooldown > 366*24*time.Hour) {
		errs = append(errs, fmt.Errorf("COUPON_DEPARTMENT_COOLDOWN=%s: must be 0 (off) or between 1s and 8784h (event ts has whole seconds)", c.DepartmentCooldown))
	}
	if c.Overflow != OverflowBlock && c.Overflow != OverflowDrop {
		errs = append(errs, fmt.Errorf("PIPELINE_OVERFLOW=%q: must be %q or %q", c.Overflow, OverflowBlock, OverflowDrop))
	}
	if c.DwellState != DwellStateMemory && c.DwellState != DwellStateRedis {
		errs = append(errs, fmt.Errorf("DWELL_STATE=%q: must be %q or %q", c.DwellState, DwellStateMemory, DwellStateRedis))
	}
	if c.ShareGroup != "" && (len(c.ShareGroup) > 64 || strings.ContainsAny(c.ShareGroup, "/+#\x00") || !utf8.ValidString(c.ShareGroup)) {
		errs = append(errs, fmt.Errorf("MQTT_SHARE_GROUP=%q: want 1 to 64 characters, none of / + # (a share name)", c.ShareGroup))
	}
	return errors.Join(errs...)
}

// Subscriber delivers the messages of a topic filter to a callback. The
// callback runs on the broker's delivery goroutine; the payload is only valid
// during the call.
type Subscriber interface {
	Subscribe(filter string, h func(topic string, payload []byte)) error
}

// AckSubscriber is a Subscriber that can leave the acknowledgement of a
// message to its handler (broker.Client, broker.Embedded). With
// DWELL_STATE=redis the focus events are taken in through it and
// acknowledged once settled, so a focus event queued in an instance that
// dies is delivered again by the broker.
type AckSubscriber interface {
	SubscribeAck(filter string, h func(topic string, payload []byte, ack func())) error
}

// Publisher sends a payload to a topic. It must not keep payload after it
// returns.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Parts are what a pipeline works with besides its Config.
type Parts struct {
	Plan *store.Plan
	// Source gives customer context and coupons (the catalog, or the cache in
	// front of a remote central); store.ErrNotFound means unknown.
	Source store.Source
	Scorer recommender.Scorer
	// ScorerB scores for the shoppers of the experiment's arm b (the
	// challenger, MODEL_B_FILE); nil: Scorer scores for everyone.
	ScorerB recommender.Scorer
	// Experiment splits the shoppers into arms: a focus of a shopper in
	// the holdout gets no coupon (outcome "holdout"); arm b is scored by
	// ScorerB.
	Experiment experiment.Config
	Threshold  float64 // PREDICTION_THRESHOLD: the least probability a coupon is offered at
	Sub        Subscriber
	Pub        Publisher
	Log        *slog.Logger
	Registerer prometheus.Registerer // receives the metrics (nil: a private registry)
	// Redis is the process's one Redis client (a server or a Redis
	// Cluster: keys one script or transaction touches share a hash tag;
	// nil when REDIS_URL is unset). It holds the state instances share with
	// DWELL_STATE=redis; its keys start with RedisPrefix (CACHE_PREFIX;
	// "storeflow:" when empty).
	Redis       redis.UniversalClient
	RedisPrefix string
}

// Pipeline turns shopper events into focus events and focus events into
// coupons.
type Pipeline struct {
	cfg       Config
	rule      DwellRule
	browsing  BrowsingRule
	plan      *store.Plan
	central   store.Source
	scorer    recommender.Scorer
	scorerB   recommender.Scorer // arm b's; nil: no challenger
	arms      experiment.Config
	threshold float64
	caps      caps     // COUPONS_PER_SHOPPER_PER_DAY, COUPON_DEPARTMENT_COOLDOWN; nil: both off
	memCaps   *memCaps // the caps in process (DWELL_STATE=memory), swept with the visits
	pub       Publisher
	sub       Subscriber
	log       *slog.Logger
	warn      *ratelog.Logger
	m         *metrics
	now       func() time.Time

	shards    []chan shopperEvent
	shoppers  *sharedShoppers // DWELL_STATE=redis; nil: each dwell worker's own table
	prefetchQ chan string
	focusQ    chan focusIn
	visits    *visits
	shared    *shared      // DWELL_STATE=redis: focus claims and the visit ledger in Redis; nil in memory
	recent    *recentFocus // focus events taken in lately: a second delivery is dropped
	first     *firsts      // the first focus and coupon, logged for a new user

	// Shutdown closes intake in the order of the flow: first the dwell
	// queues, then — once the dwell workers have published the focus events
	// of what they held — the focus queue.
	dwellGate, focusGate *gate
	pending              atomic.Int64 // focus events accepted and not yet settled
	refused              atomic.Int64 // events refused at intake during shutdown
	abandoned            atomic.Bool  // SHUTDOWN_TIMEOUT passed: what ends now is dropped
	focusStuck           atomic.Bool  // the focus stages let a hand-off wait out focusWait: shed (bulkhead.go)
	focusWait            time.Duration

	stop  chan struct{} // closed when Run returns: callbacks stop waiting
	ready chan struct{} // closed once every subscription is in place
}

// focusIn is a focus event in the focus queue, with when it was received.
type focusIn struct {
	focus    event.Focus
	received time.Time
	ack      func() // acknowledges the message once the focus settled; nil: acknowledged already
}

// New builds a pipeline of parts.
func New(cfg Config, parts Parts) (*Pipeline, error) {
	plan, central, scorer, threshold := parts.Plan, parts.Source, parts.Scorer, parts.Threshold
	sub, pub, log, reg := parts.Sub, parts.Pub, parts.Log, parts.Registerer
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	if err := (recommender.Config{Threshold: threshold}).ValidateThreshold(); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	if cfg.DwellState == DwellStateRedis && parts.Redis == nil {
		return nil, errors.New("pipeline: DWELL_STATE=redis needs Redis: set REDIS_URL")
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	p := &Pipeline{
		cfg:       cfg,
		rule:      DwellRule{Dwell: cfg.FocusDwell, Gap: cfg.FocusGap, Cooldown: cfg.FocusCooldown},
		browsing:  BrowsingRule{After: cfg.BrowsingAfter, Moves: cfg.BrowsingMoves},
		plan:      plan,
		central:   central,
		scorer:    scorer,
		scorerB:   parts.ScorerB,
		arms:      parts.Experiment,
		threshold: threshold,
		pub:       pub,
		sub:       sub,
		log:       log,
		warn:      ratelog.New(log, 10*time.Second),
		m:         newMetrics(reg),
		now:       time.Now,
		shards:    make([]chan shopperEvent, cfg.DwellWorkers),
		prefetchQ: make(chan string, cfg.QueueSize),
		focusQ:    make(chan focusIn, cfg.QueueSize),
		visits:    newVisits(),
		recent:    newRecentFocus(cfg.DedupWindow),
		first:     newFirsts(),
		dwellGate: newGate(),
		focusGate: newGate(),
		focusWait: defaultFocusWait,
		stop:      make(chan struct{}),
		ready:     make(chan struct{}),
	}
	for i := range p.shards {
		p.shards[i] = make(chan shopperEvent, cfg.QueueSize)
	}
	if cfg.DwellState == DwellStateRedis {
		p.shared = newShared(parts.Redis, parts.RedisPrefix, cfg.ClaimTTL, cfg.ShopperTTL)
		p.shoppers = newSharedShoppers(parts.Redis, parts.RedisPrefix, p.rule, p.browsing, cfg.ShopperTTL)
	}
	if rule := (capRule{perDay: cfg.CouponsPerDay, cooldown: int64(cfg.DepartmentCooldown / time.Second)}); rule != (capRule{}) {
		if p.shared != nil {
			p.caps = &redisCaps{rdb: parts.Redis, prefix: p.shared.prefix, rule: rule}
		} else {
			p.memCaps = newMemCaps(rule, cfg.MaxShoppers, p.capsEvicted)
			p.caps = p.memCaps
		}
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "storeflow_queue_depth", Help: "Events waiting in the pipeline's intake queues.",
	}, func() float64 {
		n := len(p.prefetchQ) + len(p.focusQ)
		for _, s := range p.shards {
			n += len(s)
		}
		return float64(n)
	}))
	return p, nil
}

// Ready is closed once the pipeline is subscribed to every topic it consumes.
func (p *Pipeline) Ready() <-chan struct{} { return p.ready }

// Run subscribes and processes events until ctx is done, then shuts down:
// intake closes (callbacks refuse events, counted as dropped "shutdown"),
// what is queued or in flight is finished within SHUTDOWN_TIMEOUT, and what
// is left after it is abandoned and counted. Run returns nil on a normal stop
// and an error only when a subscription fails.
func (p *Pipeline) Run(ctx context.Context) error {
	defer close(p.stop)
	if p.shoppers != nil {
		// A head start only: a batch that meets NOSCRIPT sends the script.
		if err := p.shoppers.load(ctx); err != nil {
			p.log.Warn("dwell_state_unavailable", "error", err, "detail", "loading the dwell script: events are dropped and counted until Redis answers")
		}
	}
	for _, s := range []struct {
		topic string
		h     func(string, []byte)
	}{
		{p.cfg.EntryTopic, p.onEnter}, {p.cfg.MoveTopic, p.onMove},
		{p.cfg.ExitTopic, p.onExit},
	} {
		if err := p.sub.Subscribe(p.filter(s.topic), s.h); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
	}
	// With DWELL_STATE=redis a focus event is acknowledged to the broker
	// once it settled, not when queued: the focus events an instance that
	// dies held are delivered again (to its next session), and the claims
	// let the coupon through once. Moves are acknowledged when queued.
	var err error
	if as, ok := p.sub.(AckSubscriber); ok && p.shared != nil {
		err = as.SubscribeAck(p.filter(p.cfg.FocusTopic), p.takeFocus)
	} else {
		err = p.sub.Subscribe(p.filter(p.cfg.FocusTopic), p.onFocus)
	}
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	close(p.ready)
	p.log.Info("pipeline started", "dwell", p.cfg.FocusDwell, "gap", p.cfg.FocusGap,
		"browsing_after", p.cfg.BrowsingAfter, "browsing_moves", p.cfg.BrowsingMoves,
		"dwell_workers", p.cfg.DwellWorkers, "focus_workers", p.cfg.FocusWorkers, "overflow", p.cfg.Overflow,
		"dwell_state", p.cfg.DwellState, "share_group", p.cfg.ShareGroup)

	// The workers' context outlives ctx by up to SHUTDOWN_TIMEOUT, so that
	// what was accepted is finished, its coupon published.
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	contexts := make(chan *focusJob, p.cfg.FocusWorkers)
	scored := make(chan *focusJob, p.cfg.FocusWorkers)
	var side, dwell, focus sync.WaitGroup
	worker := p.dwellWorker
	if p.shoppers != nil {
		worker = p.sharedDwellWorker
	}
	for _, in := range p.shards {
		dwell.Go(func() { worker(work, in) })
	}
	for range p.cfg.FocusWorkers {
		side.Go(func() { p.prefetchWorker(ctx) }) // only warms the cache: stops at once
	}
	side.Go(func() { p.expireVisits(ctx) })
	side.Go(func() { p.watchFirstCoupon(ctx) })
	focus.Go(func() { stage(work, p.cfg.FocusWorkers, p.focusQ, contexts, p.loadContext, p.lost) })
	focus.Go(func() { stage(work, p.cfg.FocusWorkers, contexts, scored, p.score, p.lost) })
	focus.Go(func() { sink(work, p.cfg.FocusWorkers, scored, p.offer) })

	<-ctx.Done()
	start := time.Now()
	queuedDwell, queuedFocus := p.dwellQueued(), p.pending.Load()
	timeout := time.NewTimer(p.cfg.ShutdownTimeout)
	defer timeout.Stop()
	p.dwellGate.close()
	for _, q := range p.shards {
		close(q) // no sender is left: the dwell workers end once they emptied it
	}
	drained := waitOr(waitDone(&dwell), timeout.C)
	p.focusGate.close()
	if drained {
		close(p.focusQ)
		drained = waitOr(waitDone(&focus), timeout.C)
	}
	side.Wait()
	p.m.dropped.WithLabelValues(queuePrefetch).Add(float64(drainCount(p.prefetchQ)))
	if drained {
		p.log.Info("shutdown: drained", "dwell_events", queuedDwell, "focus_events", queuedFocus,
			"refused", p.refused.Load(), "took", time.Since(start).Round(time.Millisecond))
		return nil
	}

	p.abandoned.Store(true)
	abandonedFocus, abandonedDwell := p.pending.Load(), p.dwellQueued()
	abandon()
	// Workers return at once when cancelled, unless a call ignores its
	// context; such a worker is left behind, not waited for.
	grace := time.NewTimer(min(p.cfg.ShutdownTimeout, time.Second))
	defer grace.Stop()
	stopped := waitOr(waitDone(&dwell, &focus), grace.C)
	p.m.dropShutdown.Add(float64(p.dwellQueued()))
	for _, q := range p.shards {
		drainCount(q)
	}
	for range drainCount(p.focusQ) + drainCount(contexts) + drainCount(scored) {
		p.lost()
	}
	p.log.Warn("shutdown: timeout", "timeout", p.cfg.ShutdownTimeout, "abandoned_focus_events", abandonedFocus,
		"abandoned_dwell_events", abandonedDwell, "refused", p.refused.Load(), "workers_stopped", stopped,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// filter is the subscription for topic: with MQTT_SHARE_GROUP the shared
// subscription, so the broker hands each message to one instance of the
// group. Messages still arrive on topic itself.
func (p *Pipeline) filter(topic string) string {
	if p.cfg.ShareGroup == "" {
		return topic
	}
	return "$share/" + p.cfg.ShareGroup + "/" + topic
}

func (p *Pipeline) dwellQueued() int64 {
	var n int
	for _, q := range p.shards {
		n += len(q)
	}
	return int64(n)
}

// lost counts a focus event abandoned at SHUTDOWN_TIMEOUT.
func (p *Pipeline) lost() {
	p.pending.Add(-1)
	p.m.dropShutdown.Inc()
}

// shopperEvent is an enter, move or exit on its way to a dwell worker.
type shopperEvent struct {
	kind string // kindEnter, kindMove or kindExit
	id   string
	ts   int64
	x, y int
}

// detected publishes what the dwell worker found out about a shopper (what:
// "focus" or "browsing") on topic, counts it and logs it at debug. It
// reports whether the broker took it.
func (p *Pipeline) detected(ctx context.Context, what, topic string, payload []byte, count prometheus.Counter, id string, dep store.Department, ts int64) bool {
	if err := p.pub.Publish(ctx, topic, payload); err != nil {
		p.warn.Log(slog.LevelError, what+"_publish", what+" publish failed", "customer_id", id, "error", err)
		return false
	}
	count.Inc()
	if p.log.Enabled(ctx, slog.LevelDebug) { // the arguments would allocate even when not logged
		p.log.Debug(what, "customer_id", id, "department", dep.String(), "ts", ts)
	}
	return true
}

// presence decodes an enter or exit and ends the shopper's visit. The visit
// ends here, in the callback, not later in the dwell worker: a focus event
// published after an entry must already see the new visit.
func (p *Pipeline) presence(kind, topic string, payload []byte) (event.Presence, bool) {
	e, err := event.DecodePresence(payload)
	if err != nil {
		p.reject(kind, topic, event.ReasonOf(err), err)
		return e, false
	}
	p.visits.forget(e.ID)
	return e, true
}

func (p *Pipeline) onEnter(topic string, payload []byte) {
	e, ok := p.presence(kindEnter, topic, payload)
	if !ok {
		return
	}
	if p.toDwell(shopperEvent{kind: kindEnter, id: e.ID, ts: e.TS}) {
		// The prefetch only warms the cache: when its queue is full it is
		// skipped (and counted), never waited for.
		select {
		case p.prefetchQ <- e.ID:
		default:
			p.m.dropped.WithLabelValues(queuePrefetch).Inc()
		}
	}
}

func (p *Pipeline) onMove(topic string, payload []byte) {
	m, err := event.DecodeMove(payload)
	if err != nil {
		p.reject(kindMove, topic, event.ReasonOf(err), err)
		return
	}
	if !p.plan.Contains(m.X, m.Y) {
		p.reject(kindMove, topic, reasonOffPlan, fmt.Errorf("event: position (%d,%d) is off the %s plan (%d×%d): check STORE_PLAN",
			m.X, m.Y, p.plan.Name, p.plan.Width, p.plan.Height))
		return
	}
	p.toDwell(shopperEvent{kind: kindMove, id: m.ID, ts: m.TS, x: m.X, y: m.Y})
}

func (p *Pipeline) onExit(topic string, payload []byte) {
	e, ok := p.presence(kindExit, topic, payload)
	if !ok {
		return
	}
	p.toDwell(shopperEvent{kind: kindExit, id: e.ID, ts: e.TS})
}

func (p *Pipeline) onFocus(topic string, payload []byte) { p.takeFocus(topic, payload, nil) }

// takeFocus queues a focus event; ack (nil: none) acknowledges the message:
// at once when the event goes no further, else when the focus settled.
func (p *Pipeline) takeFocus(topic string, payload []byte, ack func()) {
	f, err := event.DecodeFocus(payload)
	if err != nil {
		p.reject(kindFocus, topic, event.ReasonOf(err), err)
		acknowledge(ack)
		return
	}
	if !p.recent.add(f) {
		p.m.outcome[OutcomeDuplicate].Inc()
		p.log.Debug("focus delivered again", "customer_id", f.ID, "department", f.Dep.String(), "ts", f.TS)
		acknowledge(ack)
		return
	}
	p.pending.Add(1)
	if !p.enqueueFocus(focusIn{focus: f, received: time.Now(), ack: ack}) {
		p.pending.Add(-1)
		p.recent.forget(f)
		acknowledge(ack)
		return
	}
	p.m.acceptedBy[kindFocus].Inc()
}

// acknowledge calls ack unless it is nil.
func acknowledge(ack func()) {
	if ack != nil {
		ack()
	}
}

func (p *Pipeline) toDwell(ev shopperEvent) bool {
	q := p.shards[hashID(ev.id)%uint32(len(p.shards))]
	if !enqueue(p, p.dwellGate, q, ev, queueDwell) {
		return false
	}
	p.m.acceptedBy[ev.kind].Inc()
	return true
}

// enqueue applies the overflow policy through g. It never waits once
// shutdown has begun: then the event is dropped as "shutdown".
func enqueue[T any](p *Pipeline, g *gate, q chan T, v T, queue string) bool {
	if !g.enter() {
		p.refuse()
		return false
	}
	defer g.leave()
	select {
	case q <- v:
		return true
	default:
	}
	if p.cfg.Overflow == OverflowBlock {
		select {
		case q <- v:
			return true
		case <-g.closed:
			p.refuse()
			return false
		case <-p.stop:
		}
	}
	p.m.dropped.WithLabelValues(queue).Inc()
	p.warn.Log(slog.LevelWarn, "drop:"+queue, "event dropped: queue full", "queue", queue, "policy", p.cfg.Overflow)
	return false
}

// refuse counts an event refused because the pipeline is shutting down.
func (p *Pipeline) refuse() {
	p.refused.Add(1)
	p.m.dropShutdown.Inc()
}

func (p *Pipeline) reject(kind, topic string, reason event.Reason, err error) {
	p.m.rejected.WithLabelValues(kind, string(reason)).Inc()
	p.warn.Log(slog.LevelWarn, "reject:"+kind+":"+string(reason), "event rejected",
		"kind", kind, "topic", topic, "reason", reason, "error", err)
}

// dwellWorker owns the state of the shoppers hashed to it; nothing else
// touches that table, so there are no locks on the move path.
func (p *Pipeline) dwellWorker(ctx context.Context, in <-chan shopperEvent) {
	shoppers := newShopperTable(p.cfg.MaxShoppers / len(p.shards))
	tick := time.NewTicker(sweepInterval(p.cfg.ShopperTTL))
	defer tick.Stop()
	now := p.now().Unix()
	ttl := int64(p.cfg.ShopperTTL / time.Second)
	expire := func() {
		n := shoppers.expire(now - ttl)
		p.m.expired.Add(float64(n))
		p.m.tracked.Sub(float64(n))
	}
	var buf []byte
	// One select per event. Draining the queue with non-blocking receives
	// instead made the bench's full-speed part 20 % faster but raised the
	// real-time focus→coupon p99 at 20,000 shoppers from 0.5 ms to 3.4 ms:
	// a worker that never waits keeps the focus stages it wakes off its core.
	for {
		select {
		case <-ctx.Done():
			p.m.tracked.Sub(float64(shoppers.len()))
			return
		case <-tick.C:
			now = p.now().Unix()
			expire()
		case ev, ok := <-in:
			if !ok { // shutdown: the queue is empty and closed
				p.m.tracked.Sub(float64(shoppers.len()))
				return
			}
			switch ev.kind {
			case kindEnter, kindExit: // a new visit starts clean; an exit ends it
				if shoppers.forget(ev.id) {
					p.m.tracked.Dec()
				}
				continue
			}
			s := shoppers.touch(ev.id, now)
			if s == nil {
				if shoppers.full() {
					now = p.now().Unix()
					expire()
				}
				var gone evicted
				if s, gone = shoppers.add(ev.id, now); gone == evictedNone {
					p.m.tracked.Inc()
				} else {
					p.countEviction(gone)
				}
			}
			dep := p.plan.DepartmentAt(ev.x, ev.y)
			if res := s.move(&p.rule, &p.browsing, ev.ts, ev.x, ev.y, dep); res != moveOK {
				buf = p.act(ctx, res, ev, dep, buf)
			}
		}
	}
}

// act does what a move's result calls for, in either dwell state: count an
// out-of-order move, publish the focus or browsing event it completed (the
// move's ts, the department of its position). buf is reused for the
// payload and returned.
func (p *Pipeline) act(ctx context.Context, res moveResult, ev shopperEvent, dep store.Department, buf []byte) []byte {
	switch res {
	case moveOutOfOrder:
		p.m.outOfOrder.Inc()
	case moveBrowsing:
		buf = event.AppendBrowsing(buf[:0], event.Browsing{ID: ev.id, TS: ev.ts, Dep: dep, X: ev.x, Y: ev.y, HasPos: true})
		p.detected(ctx, "browsing", p.cfg.BrowsingTopic, buf, p.m.browsing, ev.id, dep, ev.ts)
	case moveFocus:
		buf = event.AppendFocus(buf[:0], event.Focus{ID: ev.id, TS: ev.ts, Dep: dep, X: ev.x, Y: ev.y, HasPos: true})
		p.detected(ctx, "focus", p.cfg.FocusTopic, buf, p.m.focus, ev.id, dep, ev.ts)
	}
	return buf
}

// countEviction counts a shopper a full table let go, and warns
// (rate-limited): one seen in one move only is what a flood of fake ids
// costs; an established one means MAX_SHOPPERS is too small for the store.
func (p *Pipeline) countEviction(gone evicted) {
	p.m.evicted[gone].Inc()
	if gone == evictedOneMove {
		p.warn.Log(slog.LevelWarn, "evicted:one_move", "MAX_SHOPPERS reached: a shopper seen in one move only was forgotten for a new one")
	} else {
		p.warn.Log(slog.LevelWarn, "evicted:least_recent", "MAX_SHOPPERS reached: the least recently active shopper was forgotten for a new one; raise MAX_SHOPPERS")
	}
}

func sweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/4, time.Second), time.Minute)
}

func (p *Pipeline) prefetchWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-p.prefetchQ:
			_, err := p.central.Customer(ctx, id)
			switch {
			case err == nil:
				p.m.prefetch.WithLabelValues("ok").Inc()
			case errors.Is(err, store.ErrNotFound):
				p.m.prefetch.WithLabelValues(OutcomeUnknownCustomer).Inc()
				p.warn.Log(slog.LevelWarn, "prefetch:unknown", "entry of an unknown customer", "customer_id", id)
			case centralOutcome(err) != OutcomeContextError: // not asked, to spare the central: counted, not logged
				p.m.prefetch.WithLabelValues(centralOutcome(err)).Inc()
			default:
				p.m.prefetch.WithLabelValues("error").Inc()
				p.warn.Log(slog.LevelError, "prefetch:error", "context prefetch failed", "customer_id", id, "error", err)
			}
		}
	}
}

func (p *Pipeline) expireVisits(ctx context.Context) {
	t := time.NewTicker(sweepInterval(p.cfg.ShopperTTL))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.visits.expire(p.now().Unix() - int64(p.cfg.ShopperTTL/time.Second))
			if p.memCaps != nil {
				p.memCaps.expire()
			}
		}
	}
}
