// Package liveview owns the store on screen, server side: it follows the
// store's topics on the process's own broker connection, keeps the current
// state (shoppers in the store, recent coupons, open browsing alerts, live
// figures) and serves it as a snapshot (GET /api/store) and as a stream of
// Server-Sent Events (GET /api/events), one per topic message.
//
// The broker's delivery goroutine only decodes, updates the state and offers
// the event to each viewer's bounded buffer without waiting: a viewer whose
// buffer is full loses it (counted) and is told to resynchronise from the
// snapshot.
package liveview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/metric"
	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/store"
)

// Bounds of what the view keeps.
const (
	recentCoupons  = 20   // coupons in the snapshot
	shopperCoupons = 10   // coupons kept per shopper in the store, for their phone
	replayFrames   = 1024 // events kept for a viewer reconnecting with Last-Event-ID
	viewerBuffer   = 1024 // events waiting to be written to one viewer
	perMinute      = 60   // one-second buckets of the per-minute figures
)

// Subscriber delivers the messages of a topic filter to a callback on the
// broker's delivery goroutine; the payload is only valid during the call.
type Subscriber interface {
	Subscribe(filter string, h func(topic string, payload []byte)) error
}

// Topics are the topic names the view follows.
type Topics struct {
	Enter, Move, Exit, Focus, Browsing, Prediction string
}

// reasonOffPlan refuses a move off the store plan, as the pipeline does.
const reasonOffPlan event.Reason = "off_plan"

// Event names on the stream, one per topic, and resync.
const (
	kindEnter    = "enter"
	kindMove     = "move"
	kindExit     = "exit"
	kindFocus    = "focus"
	kindBrowsing = "browsing"
	kindCoupon   = "coupon"
	kindResync   = "resync"
	kindHelped   = "helped"  // an alert closed by a member of staff
	kindFigures  = "figures" // the live figures, every figuresEvery while a viewer is open; no id
)

// View is the live view of one store.
type View struct {
	cfg    Config
	plan   *store.Plan
	topics Topics
	log    *ratelog.Logger
	now    func() time.Time
	m      metrics

	mu       sync.Mutex
	seq      uint64
	shoppers map[string]*Shopper
	coupons  []kept            // oldest first, at most recentCoupons
	mine     map[string][]kept // by shopper in the store: their coupons, oldest first, at most shopperCoupons
	alerts   map[string]event.Browsing
	focus    minuteCount
	issued   minuteCount
	replay   []frame // ring of the last replayFrames events kept, at seq % replayFrames
	viewers  map[*viewer]struct{}

	more func(*Figures) // SetFigures; nil fills nothing more

	buf       []byte    // an event's data, written before it is framed
	keepUntil time.Time // events are kept until then after the last page closed; zero: not since

	closed    chan struct{} // closed by Close: streams end
	closeOnce sync.Once
}

// Shopper is a shopper in the store as the view sees them.
type Shopper struct {
	ID     string `json:"id"`
	X      int    `json:"x"`
	Y      int    `json:"y"`
	HasPos bool   `json:"has_pos"` // false until the first move
	Dep    string `json:"dep"`     // department at the position; "" in an aisle
	Focus  bool   `json:"focus"`   // focused in Dep since the last move out of it
}

// kept is a coupon message kept for the snapshot.
type kept struct {
	who string // customer.id
	msg json.RawMessage
}

type frame struct {
	seq  uint64
	who  string // the shopper the event is about; "" for every viewer
	data []byte // the whole SSE frame, id to blank line
}

type metrics struct {
	dropped  prometheus.Counter
	resyncs  prometheus.Counter
	refused  prometheus.Counter
	rejected *prometheus.CounterVec
	viewers  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		dropped: metric.Counter("storeflow_view_events_dropped_total",
			"Live view events not delivered to a viewer whose buffer was full (the viewer is told to resync)."),
		resyncs: metric.Counter("storeflow_view_resyncs_total", "Live view viewers told to resynchronise from the snapshot."),
		refused: metric.Counter("storeflow_view_viewers_refused_total", "Live view event streams refused: VIEW_MAX_VIEWERS open."),
		rejected: metric.CounterVec("storeflow_view_events_rejected_total",
			"Messages the live view could not read, by topic kind and reason.", "kind", "reason"),
		viewers: metric.Gauge("storeflow_view_viewers", "Live view event streams open."),
	}
	for _, kind := range []string{kindEnter, kindMove, kindExit, kindFocus, kindBrowsing, kindCoupon} {
		for _, r := range event.Reasons {
			m.rejected.WithLabelValues(kind, string(r))
		}
	}
	m.rejected.WithLabelValues(kindMove, string(reasonOffPlan))
	reg.MustRegister(m.dropped, m.resyncs, m.refused, m.rejected, m.viewers)
	return m
}

// New returns a view of plan; Subscribe makes it follow the topics.
func New(cfg Config, plan *store.Plan, topics Topics, log *slog.Logger, reg prometheus.Registerer) (*View, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("liveview: %w", err)
	}
	return &View{
		cfg: cfg, plan: plan, topics: topics, log: ratelog.New(log, time.Minute), now: time.Now, m: newMetrics(reg),
		shoppers: make(map[string]*Shopper), alerts: make(map[string]event.Browsing), mine: make(map[string][]kept),
		replay: make([]frame, replayFrames), viewers: make(map[*viewer]struct{}), closed: make(chan struct{}),
	}, nil
}

// Subscribe follows the view's topics on sub.
func (v *View) Subscribe(sub Subscriber) error {
	for _, t := range []struct {
		topic string
		h     func(string, []byte)
	}{
		{v.topics.Enter, v.onEnter}, {v.topics.Move, v.onMove}, {v.topics.Exit, v.onExit},
		{v.topics.Focus, v.onFocus}, {v.topics.Browsing, v.onBrowsing}, {v.topics.Prediction, v.onCoupon},
	} {
		if err := sub.Subscribe(t.topic, t.h); err != nil {
			return fmt.Errorf("liveview: %w", err)
		}
	}
	return nil
}

func (v *View) reject(kind string, err error) {
	reason := string(event.ReasonOf(err))
	v.m.rejected.WithLabelValues(kind, reason).Inc()
	v.log.Log(slog.LevelWarn, "view_rejected:"+kind+":"+reason, "live view could not read a message", "kind", kind, "reason", reason, "error", err)
}

func (v *View) onEnter(_ string, payload []byte) {
	p, err := event.DecodePresence(payload)
	if err != nil {
		v.reject(kindEnter, err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.shoppers[p.ID]; !ok {
		v.shoppers[p.ID] = &Shopper{ID: p.ID}
	}
	if v.next() {
		v.buf = event.AppendPresence(v.buf[:0], p)
		v.publish(kindEnter, p.ID, v.buf)
	}
}

func (v *View) onMove(_ string, payload []byte) {
	m, err := event.DecodeMove(payload)
	if err == nil && !v.plan.Contains(m.X, m.Y) {
		err = &event.Error{Reason: reasonOffPlan, Field: "x", Detail: fmt.Sprintf("(%d, %d) is not on the store plan", m.X, m.Y)}
	}
	if err != nil {
		v.reject(kindMove, err)
		return
	}
	dep := v.plan.DepartmentAt(m.X, m.Y)
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.shopper(m.ID)
	if dep.String() != s.Dep {
		s.Focus = false
	}
	s.X, s.Y, s.HasPos, s.Dep = m.X, m.Y, true, dep.String()
	if v.next() {
		v.buf = event.AppendMove(v.buf[:0], m)
		v.publish(kindMove, m.ID, v.buf)
	}
}

func (v *View) onExit(_ string, payload []byte) {
	p, err := event.DecodePresence(payload)
	if err != nil {
		v.reject(kindExit, err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.shoppers, p.ID)
	delete(v.alerts, p.ID)
	delete(v.mine, p.ID)
	if v.next() {
		v.buf = event.AppendPresence(v.buf[:0], p)
		v.publish(kindExit, p.ID, v.buf)
	}
}

func (v *View) onFocus(_ string, payload []byte) {
	f, err := event.DecodeFocus(payload)
	if err != nil {
		v.reject(kindFocus, err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.shopper(f.ID)
	s.Focus, s.Dep = true, f.Dep.String()
	if f.HasPos {
		s.X, s.Y, s.HasPos = f.X, f.Y, true
	}
	v.focus.add(v.now())
	if v.next() {
		v.buf = event.AppendFocus(v.buf[:0], f)
		v.publish(kindFocus, f.ID, v.buf)
	}
}

func (v *View) onBrowsing(_ string, payload []byte) {
	b, err := event.DecodeBrowsing(payload)
	if err != nil {
		v.reject(kindBrowsing, err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.alerts[b.ID] = b
	if v.next() {
		v.buf = event.AppendBrowsing(v.buf[:0], b)
		v.publish(kindBrowsing, b.ID, v.buf)
	}
}

func (v *View) onCoupon(_ string, payload []byte) {
	o, err := event.DecodeOffer(payload)
	if err != nil {
		v.reject(kindCoupon, err)
		return
	}
	var msg bytes.Buffer // one line, as an SSE data line needs
	if err := json.Compact(&msg, payload); err != nil {
		v.reject(kindCoupon, err)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	k := kept{who: o.CustomerID, msg: msg.Bytes()}
	v.coupons = appendLast(v.coupons, k, recentCoupons)
	if _, in := v.shoppers[o.CustomerID]; in {
		v.mine[o.CustomerID] = appendLast(v.mine[o.CustomerID], k, shopperCoupons)
	}
	v.issued.add(v.now())
	if v.next() {
		v.publish(kindCoupon, o.CustomerID, msg.Bytes())
	}
}

// appendLast appends k to list, keeping the last max.
func appendLast(list []kept, k kept, max int) []kept {
	if len(list) == max {
		copy(list, list[1:])
		list = list[:max-1]
	}
	return append(list, k)
}

// shopper returns the shopper id, added if the view missed their enter
// (it started while they were in the store).
func (v *View) shopper(id string) *Shopper {
	s, ok := v.shoppers[id]
	if !ok {
		s = &Shopper{ID: id}
		v.shoppers[id] = s
	}
	return s
}

// replayGrace is how long events are still kept for replay after the last
// page closed its stream: a page that lost its connection for a moment
// reconnects and gets what it missed.
const replayGrace = 30 * time.Second

// next numbers an event and reports whether to frame it for the pages: yes
// while a stream is open (and for replayGrace after the last one closed).
// Otherwise the event only updates the state, and a page reconnecting from
// before it is told to resync. v.mu is held.
func (v *View) next() bool {
	v.seq++
	if len(v.viewers) > 0 {
		return true
	}
	if !v.keepUntil.IsZero() && v.now().Before(v.keepUntil) {
		return true
	}
	v.keepUntil = time.Time{}
	return false
}

// publish frames the event next numbered, keeps it for replay and offers it
// to every viewer without waiting. data is copied. v.mu is held.
func (v *View) publish(kind, who string, data []byte) {
	f := frame{seq: v.seq, who: who, data: sseFrame(v.seq, kind, data)}
	v.replay[int(f.seq%replayFrames)] = f
	for w := range v.viewers {
		w.offer(f, v.m)
	}
}

// sseFrame is one event of the stream; seq 0 gives it no id (the viewer's
// Last-Event-ID stays that of the last numbered event).
func sseFrame(seq uint64, kind string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(kind)+40)
	if seq > 0 {
		b = append(b, "id: "...)
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, kind...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// since returns the kept events after seq, oldest first, or ok=false when
// some of them are no longer kept. v.mu is held.
func (v *View) since(seq uint64) (_ []frame, ok bool) {
	if seq > v.seq {
		return nil, false // not one of ours: an earlier process's
	}
	n := v.seq - seq
	if n > replayFrames {
		return nil, false
	}
	out := make([]frame, 0, n)
	for s := seq + 1; s <= v.seq; s++ {
		f := v.replay[int(s%replayFrames)]
		if f.seq != s {
			return nil, false // overwritten, or never kept
		}
		out = append(out, f)
	}
	return out, true
}

// minuteCount counts events of the last minute in one-second buckets.
type minuteCount struct {
	sec [perMinute]int64 // the unix second each bucket counts
	n   [perMinute]int
}

func (c *minuteCount) add(t time.Time) {
	s := t.Unix()
	i := int(s % perMinute)
	if c.sec[i] != s {
		c.sec[i], c.n[i] = s, 0
	}
	c.n[i]++
}

func (c *minuteCount) last(t time.Time) int {
	now, total := t.Unix(), 0
	for i := range c.sec {
		if now-c.sec[i] < perMinute && c.sec[i] <= now {
			total += c.n[i]
		}
	}
	return total
}
