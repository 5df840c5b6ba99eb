package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// TCPOptions sizes a real-path bench run.
type TCPOptions struct {
	Exe           string   // the storeflow binary to run under test
	Env           []string // its environment; the bench adds its own settings last
	Publishers    int      // sensor connections
	Visits        int      // scripted visits per load
	Linger        int      // moves per visit inside Boys
	PacedFraction float64  // the paced load's rate, as a fraction of the full-speed ingest rate
	External      string   // HOST:PORT of an outside broker; empty: a mosquitto the bench starts, if installed
}

// TCPReport is what a real-path bench run measured.
type TCPReport struct {
	Publishers, Visits, Linger int
	Reference                  ReferenceReport
	Embedded                   PathReport
	External                   *PathReport // nil without mosquitto or --external
}

// ReferenceReport is a broker alone forwarding the moves to one TCP
// subscriber at QoS 0.
type ReferenceReport struct {
	Broker   string // what it was
	Sent     int    // moves published
	Received int    // moves the subscriber got
	Elapsed  time.Duration
	CPU      time.Duration // the broker's; -1: not measured (an outside broker, or this process)
}

// MovesPerSec is the moves received over the time from the first publish
// to the last move received.
func (r ReferenceReport) MovesPerSec() float64 { return perSec(r.Received, r.Elapsed) }

// PathReport is storeflow on one broker: the load at full speed, then paced.
type PathReport struct {
	Broker      string
	Full, Paced LoadReport
	// Stalled: at full speed storeflow stopped accepting moves before it had
	// them all (none for 5 s); the paced load did not run.
	Stalled bool
}

// LoadReport is one load of scripted visits through storeflow over TCP.
type LoadReport struct {
	Visits, Moves int
	Rate          float64          // the pace asked for, moves/s; 0: full speed
	Ingest        time.Duration    // first publish → every move accepted (storeflow_events_accepted_total{kind="move"}); 0: not all were
	Accepted      int64            // moves storeflow accepted
	Elapsed       time.Duration    // first publish → the last coupon received
	Published     int64            // storeflow_coupons_published_total
	Delivered     int              // distinct coupons for the run's focus events the phone received
	Unexpected    int              // other coupon messages the phone received (again, or unknown)
	LastHopDrops  int64            // coupons storeflow counted as not delivered: storeflow_broker_dropped_total, storeflow_mqtt_client_events_total{event=offline_dropped|publish_error}
	EventsDropped int64            // storeflow_events_dropped_total: events storeflow's queues dropped
	Focus         int64            // storeflow_focus_detected_total
	FocusNoCoupon map[string]int64 // storeflow_focus_outcomes_total other than published, by outcome: focus events that got no coupon
	LatencyP50    time.Duration    // dwell-completing move flushed → its coupon at the phone
	LatencyP99    time.Duration
	LatencyMax    time.Duration
	CPU           time.Duration // storeflow's user+system CPU during the load
}

// MovesPerSec is the ingest rate: moves over the time until storeflow had
// accepted them all.
func (l LoadReport) MovesPerSec() float64 { return perSec(l.Moves, l.Ingest) }

// CouponsPerSec is coupons delivered over the time to the last one.
func (l LoadReport) CouponsPerSec() float64 { return perSec(l.Delivered, l.Elapsed) }

// Lost is coupons published that neither reached the phone nor were counted
// as dropped.
func (l LoadReport) Lost() int64 { return l.Published - int64(l.Delivered) - l.LastHopDrops }

// CPUPerMove is storeflow's CPU per move.
func (l LoadReport) CPUPerMove() time.Duration {
	if l.Moves == 0 {
		return 0
	}
	return l.CPU / time.Duration(l.Moves)
}

// Ratio is storeflow's ingest rate on path p (full speed) over the
// reference broker's forwarding rate.
func (r TCPReport) Ratio(p *PathReport) float64 {
	if p == nil || r.Reference.MovesPerSec() == 0 {
		return 0
	}
	return p.Full.MovesPerSec() / r.Reference.MovesPerSec()
}

// TCP runs the real path: sensors publishing over TCP, a phone subscribed
// over TCP, storeflow a child process. First a reference broker forwards the
// moves to one subscriber (mosquitto when installed, or opts.External; else
// the embedded broker in this process with no pipeline); then storeflow with
// its embedded broker; then, with mosquitto or opts.External, storeflow on
// that broker. Each storeflow load runs at full speed, then paced.
func TCP(ctx context.Context, cfg config.Config, opts TCPOptions) (TCPReport, error) {
	r := TCPReport{Publishers: opts.Publishers, Visits: opts.Visits, Linger: opts.Linger}
	plan, err := store.NewPlan(cfg.Store.Plan, cfg.Store.Width, cfg.Store.Height)
	if err != nil {
		return r, err
	}
	area, ok := plan.Area(store.Boys)
	if !ok {
		return r, fmt.Errorf("bench: the plan has no Boys department")
	}
	// The child generates the same shop from CATALOG_SEED (DATA_DIR is unset
	// for it): its customers are these.
	cat, err := world.GenerateCatalog(world.Config{Seed: cfg.Store.CatalogSeed, Reference: time.Now()})
	if err != nil {
		return r, err
	}
	sc := &script{enter: cfg.Pipeline.EntryTopic, move: cfg.Pipeline.MoveTopic, exit: cfg.Pipeline.ExitTopic, coupons: cfg.Pipeline.PredictionTopic,
		x: area.Rect.Min.X, y: area.Rect.Min.Y, linger: opts.Linger, dwellMove: int(cfg.Pipeline.FocusDwell / time.Second)}
	if sc.dwellMove >= sc.linger {
		return r, fmt.Errorf("bench: --linger %d: a visit needs more than %d moves to complete FOCUS_DWELL=%s", opts.Linger, sc.dwellMove, cfg.Pipeline.FocusDwell)
	}
	for _, c := range cat.Customers() {
		sc.customers = append(sc.customers, c.ID)
	}

	outside := opts.External
	var outsideProc *process
	if outside == "" {
		if bin := mosquittoBin(); bin != "" {
			p, addr, stop, err := startMosquitto(ctx, bin)
			if err != nil {
				return r, err
			}
			defer stop()
			outside, outsideProc = addr, p
		}
	}

	// (a) the reference.
	refAddr, cpu := outside, func() (time.Duration, error) { return -1, nil }
	r.Reference.Broker = "external broker " + outside
	switch {
	case outsideProc != nil:
		r.Reference.Broker, cpu = "mosquitto", outsideProc.cpu
	case outside == "":
		addr, stop, err := startReferenceEmbedded(ctx)
		if err != nil {
			return r, err
		}
		defer stop()
		refAddr, r.Reference.Broker = addr, "embedded broker in the bench process, no pipeline (mosquitto not installed)"
	}
	if r.Reference, err = reference(ctx, sc, refAddr, r.Reference.Broker, opts, cpu); err != nil {
		return r, err
	}

	// (b) storeflow with its embedded broker, then (c) on the outside broker.
	if r.Embedded, err = storeflowPath(ctx, sc, opts, ""); err != nil {
		return r, err
	}
	if outside != "" {
		p, err := storeflowPath(ctx, sc, opts, outside)
		if err != nil {
			return r, err
		}
		p.Broker = r.Reference.Broker
		r.External = &p
	}
	return r, nil
}

// reference plays opts.Visits visits to the broker at addr with one
// subscriber to the moves at QoS 0.
func reference(ctx context.Context, sc *script, addr, name string, opts TCPOptions, cpu func() (time.Duration, error)) (ReferenceReport, error) {
	r := ReferenceReport{Broker: name, Sent: opts.Visits * opts.Linger}
	var received, last atomic.Int64
	sub, err := dialPhone(addr, "bench-reference-subscriber", sc.move, 0, func([]byte) {
		received.Add(1)
		last.Store(time.Now().UnixNano())
	})
	if err != nil {
		return r, err
	}
	defer sub.Disconnect(0)
	sensors, err := dialSensors(ctx, addr, opts.Publishers)
	if err != nil {
		return r, err
	}
	defer closeSensors(sensors)
	cpuBefore, err := cpu()
	if err != nil {
		return r, err
	}
	start := time.Now()
	if err := sc.play(ctx, sensors, opts.Visits, time.Now().Unix(), 0, func(focusKey, time.Time) {}); err != nil {
		return r, err
	}
	// Every move received, or none for 5 s: a QoS 0 move the broker dropped
	// never comes.
	waitQuiet(ctx, 5*time.Millisecond, func() int64 { return received.Load() }, int64(r.Sent), 5*time.Second, time.Minute)
	cpuAfter, err := cpu()
	if err != nil {
		return r, err
	}
	r.Received = int(received.Load())
	if l := last.Load(); l > 0 {
		r.Elapsed = time.Unix(0, l).Sub(start)
	}
	r.CPU = cpuAfter - cpuBefore
	if cpuBefore < 0 {
		r.CPU = -1
	}
	return r, nil
}

// waitQuiet polls n every interval until it reaches want, stays unchanged
// for quiet, ctx ends, or limit passes, and reports whether it reached want.
func waitQuiet(ctx context.Context, interval time.Duration, n func() int64, want int64, quiet, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	seen, since := n(), time.Now()
	for seen < want && time.Since(since) < quiet && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(interval)
		if v := n(); v != seen {
			seen, since = v, time.Now()
		}
	}
	return seen >= want
}

// storeflowPath runs storeflow (its embedded broker for outside "", else
// connected to outside) and plays the visits at full speed, then paced.
func storeflowPath(ctx context.Context, sc *script, opts TCPOptions, outside string) (PathReport, error) {
	sf, err := startStoreflow(ctx, opts.Exe, opts.Env, outside)
	if err != nil {
		return PathReport{}, err
	}
	defer sf.stop()
	pr := PathReport{Broker: "embedded"}
	base := time.Now().Unix()
	if pr.Full, err = sf.load(ctx, sc, opts, base, 0); err != nil {
		return pr, err
	}
	if pr.Full.Ingest == 0 {
		// Stalled: no rate to pace at, and a stalled storeflow takes no more.
		pr.Stalled = true
		return pr, nil
	}
	pr.Paced, err = sf.load(ctx, sc, opts, base+sc.span(opts.Visits), opts.PacedFraction*pr.Full.MovesPerSec())
	return pr, err
}

// load plays the visits from event time base at rate moves/s (0: full
// speed) to storeflow's broker with a phone subscribed to the coupons at
// QoS 1, and reads what storeflow did from its /metrics.
func (sf *storeflow) load(ctx context.Context, sc *script, opts TCPOptions, base int64, rate float64) (LoadReport, error) {
	l := LoadReport{Visits: opts.Visits, Moves: opts.Visits * opts.Linger, Rate: rate}
	ph := newPhone(opts.Visits)
	sub, err := dialPhone(sf.mqtt, "bench-phone", sc.coupons, 1, ph.coupon)
	if err != nil {
		return l, err
	}
	defer sub.Disconnect(0)
	sensors, err := dialSensors(ctx, sf.mqtt, opts.Publishers)
	if err != nil {
		return l, err
	}
	defer closeSensors(sensors)

	before, err := sf.counts()
	if err != nil {
		return l, err
	}
	cpuBefore, err := sf.cpu()
	if err != nil {
		return l, err
	}
	start := time.Now()
	if err := sc.play(ctx, sensors, opts.Visits, base, rate, ph.sent); err != nil {
		return l, err
	}
	// Every move accepted, or none for 5 s: storeflow stalled.
	accepted := int64(0)
	if waitQuiet(ctx, 10*time.Millisecond, func() int64 {
		if c, err := sf.counts(); err == nil {
			accepted = c.minus(before).moves
		}
		return accepted
	}, int64(l.Moves), 5*time.Second, time.Minute) {
		l.Ingest = time.Since(start)
	}
	// Every coupon in, or nothing new for 10 s (a coupon lost without a
	// count never comes; on a busy machine the stages may pause for seconds).
	waitQuiet(ctx, 5*time.Millisecond, func() int64 { d, _ := ph.counts(); return int64(d) }, int64(opts.Visits), 10*time.Second, 2*time.Minute)
	// storeflow counts a coupon once the broker acknowledged its publish,
	// which can be after the phone got it: wait until every focus detected
	// has its outcome counted (or 10 s).
	for settle := time.Now().Add(10 * time.Second); time.Now().Before(settle) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		c, err := sf.counts()
		if err != nil {
			return l, err
		}
		if c = c.minus(before); c.coupons+c.settledWithout() >= c.focus {
			break
		}
	}
	cpuAfter, err := sf.cpu()
	if err != nil {
		return l, err
	}
	after, err := sf.counts()
	if err != nil {
		return l, err
	}
	after = after.minus(before)
	l.Accepted, l.Published, l.LastHopDrops, l.EventsDropped = after.moves, after.coupons, after.lastHop, after.dropped
	l.Focus, l.FocusNoCoupon = after.focus, after.noCoupon
	l.CPU = cpuAfter - cpuBefore
	var last time.Time
	l.Delivered, last = ph.counts()
	if l.Delivered > 0 {
		l.Elapsed = last.Sub(start)
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	l.Unexpected = ph.other
	l.LatencyP50, l.LatencyP99, l.LatencyMax = percentiles(ph.lat)
	return l, nil
}

// storeflowCounts is what the bench reads of storeflow's /metrics.
type storeflowCounts struct {
	moves, coupons, lastHop, dropped int64
	focus                            int64
	noCoupon                         map[string]int64 // focus outcomes other than published, by outcome
}

func (sf *storeflow) counts() (storeflowCounts, error) {
	m, err := sf.metrics()
	if err != nil {
		return storeflowCounts{}, err
	}
	c := storeflowCounts{
		moves:   int64(m.Sum("storeflow_events_accepted_total", `kind="move"`)),
		coupons: int64(m.Sum("storeflow_coupons_published_total", "")),
		lastHop: int64(m.Sum("storeflow_broker_dropped_total", "") +
			m.Sum("storeflow_mqtt_client_events_total", `event="offline_dropped"`) +
			m.Sum("storeflow_mqtt_client_events_total", `event="publish_error"`)),
		dropped:  int64(m.Sum("storeflow_events_dropped_total", "")),
		focus:    int64(m.Sum("storeflow_focus_detected_total", "")),
		noCoupon: map[string]int64{},
	}
	for outcome, n := range m.byLabel("storeflow_focus_outcomes_total", "outcome") {
		if outcome != "published" {
			c.noCoupon[outcome] = int64(n)
		}
	}
	return c, nil
}

func (c storeflowCounts) minus(b storeflowCounts) storeflowCounts {
	d := storeflowCounts{c.moves - b.moves, c.coupons - b.coupons, c.lastHop - b.lastHop, c.dropped - b.dropped,
		c.focus - b.focus, map[string]int64{}}
	for outcome, n := range c.noCoupon {
		if n -= b.noCoupon[outcome]; n != 0 {
			d.noCoupon[outcome] = n
		}
	}
	return d
}

// FocusWithoutCoupon is the focus events that got no coupon, for any reason.
func (l LoadReport) FocusWithoutCoupon() int64 { return sumCounts(l.FocusNoCoupon) }

// settledWithout is the focus events settled without a coupon.
func (c storeflowCounts) settledWithout() int64 { return sumCounts(c.noCoupon) }

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
