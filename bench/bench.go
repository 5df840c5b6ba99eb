// Package bench measures the real wiring. In one process: the broker's
// ceiling, the pipeline at full speed and shoppers at real speed, read
// through the pipeline's own Counts. On the real path (TCP): storeflow run
// as a child process with sensors and a phone connected over TCP, beside a
// reference broker, read through its /metrics and /proc.
package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeflow/storeflow/app"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/pipeline"
	"github.com/storeflow/storeflow/store"
)

// Options sizes a bench run.
type Options struct {
	Shoppers         int           // scripted visits to play in the pipeline part
	Linger           int           // moves each scripted shopper makes inside the department (more than the dwell)
	Duration         time.Duration // the real-time part; the ceiling part gets a third of it
	RealtimeShoppers int           // shoppers walking at real speed in the real-time part
	RealtimeLinger   int           // seconds (moves) a real-time shopper stays before leaving
}

// Report is what a bench run measured.
type Report struct {
	Ceiling  CeilingReport
	Pipeline PipelineReport
	Realtime RealtimeReport
}

// CeilingReport is the broker alone: move payloads through the inline
// client, decoded and nothing else.
type CeilingReport struct {
	Moves   int
	Elapsed time.Duration
}

// MovesPerSec is the ceiling's throughput.
func (c CeilingReport) MovesPerSec() float64 { return perSec(c.Moves, c.Elapsed) }

// PipelineReport is the scripted visits played as fast as the pipeline takes them.
type PipelineReport struct {
	Events          int           // enter, move and exit events published
	Moves           int           // of which moves
	Focus           int           // focus events detected
	Predictions     int           // coupons received
	Elapsed         time.Duration // from the first event to the last coupon (or timeout)
	DwellElapsed    time.Duration // from the first event to the last focus detected (0: not all within the timeout)
	LatencyP50      time.Duration // focus-completing move published → coupon received
	LatencyP99      time.Duration //
	LatencyMax      time.Duration //
	AllocBytesPerEv float64       // heap bytes allocated per event, whole process
	AllocsPerEv     float64       // heap allocations per event, whole process
	AllocsPerMove   float64       // heap allocations per move, whole process
}

// MovesPerSec is the pipeline's move throughput.
func (p PipelineReport) MovesPerSec() float64 { return perSec(p.Moves, p.Elapsed) }

// DwellMovesPerSec is the dwell detector's move throughput: until every
// focus was detected, not waiting for the coupons.
func (p PipelineReport) DwellMovesPerSec() float64 { return perSec(p.Moves, p.DwellElapsed) }

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Run runs the app and measures, in one process: the broker's ceiling, the
// pipeline at full speed, and shoppers at real speed. The app must be built
// with the simulator off; Run runs it and stops it.
func Run(ctx context.Context, a *app.App, opts Options) (Report, error) {
	var r Report
	err := running(ctx, a, func(ctx context.Context, b *bench) (err error) {
		if r.Ceiling, err = b.ceiling(ctx, opts.Duration/3); err != nil {
			return err
		}
		if r.Pipeline, err = b.pipelineRun(ctx, opts); err != nil {
			return err
		}
		r.Realtime, err = b.realtime(ctx, opts, &b.onCoupon)
		return err
	})
	return r, err
}

// running runs a until measure returns, and stops it.
func running(ctx context.Context, a *app.App, measure func(context.Context, *bench) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-runErr:
		return fmt.Errorf("bench: app stopped: %w", err)
	}

	// One subscription for every part: the inline client cannot unsubscribe
	// through app.Broker, so each part installs its own coupon handler.
	b := &bench{br: a.Broker(), cfg: a.Config().Pipeline, plan: a.Plan(), catalog: a.Catalog(), pipeline: a.Pipeline()}
	err := b.br.Subscribe(b.cfg.PredictionTopic, func(_ string, payload []byte) {
		now := time.Now()
		f := b.onCoupon.Load()
		if f == nil {
			return
		}
		o, err := event.DecodeOffer(payload)
		if err != nil {
			return
		}
		(*f)(o.CustomerID, now)
	})
	if err != nil {
		return err
	}
	if err := measure(ctx, b); err != nil {
		return err
	}
	cancel()
	return <-runErr
}

// ceilingTopic is private to the bench: nothing in the pipeline listens.
const ceilingTopic = "bench/ceiling"

// bench is what a run reaches of the running app.
type bench struct {
	br       app.Broker
	cfg      pipeline.Config
	plan     *store.Plan
	catalog  *store.Catalog
	pipeline *pipeline.Pipeline
	onCoupon atomic.Pointer[func(id string, at time.Time)] // the running part's coupon handler
}

// ceiling publishes move payloads for d through the inline client to a
// handler that only decodes them: the most the broker path can carry.
func (b *bench) ceiling(ctx context.Context, d time.Duration) (CeilingReport, error) {
	var received, bad atomic.Int64
	err := b.br.Subscribe(ceilingTopic, func(_ string, payload []byte) {
		if _, err := event.DecodeMove(payload); err != nil {
			bad.Add(1)
			return
		}
		received.Add(1)
	})
	if err != nil {
		return CeilingReport{}, err
	}
	customers := b.catalog.Customers()
	ts := time.Now().Unix()
	var buf []byte
	n := 0
	start := time.Now()
	for ctx.Err() == nil {
		for range 1024 {
			c := customers[n%len(customers)]
			buf = event.AppendMove(buf[:0], event.Move{ID: c.ID, TS: ts + int64(n/len(customers)), X: 1, Y: 1})
			if err := b.br.Publish(ctx, ceilingTopic, buf); err != nil {
				return CeilingReport{}, err
			}
			n++
		}
		if time.Since(start) >= d {
			break
		}
	}
	elapsed := time.Since(start)
	if bad.Load() > 0 {
		return CeilingReport{}, fmt.Errorf("bench: ceiling: %d moves failed to decode", bad.Load())
	}
	return CeilingReport{Moves: int(received.Load()), Elapsed: elapsed}, nil
}

// pipelineRun plays scripted visits through the app's own broker, as fast
// as the pipeline accepts them (PIPELINE_OVERFLOW=block paces the
// publisher), and measures throughput, the latency from the move that
// completes a focus to the coupon, and allocations.
func (b *bench) pipelineRun(ctx context.Context, opts Options) (PipelineReport, error) {
	var (
		mu       sync.Mutex
		sentAt   = make(map[string]time.Time, opts.Shoppers)
		lat      []time.Duration
		allDone  = make(chan struct{})
		received int
	)
	handler := func(id string, now time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if t, ok := sentAt[id]; ok {
			lat = append(lat, now.Sub(t))
			delete(sentAt, id)
		}
		received++
		if received == opts.Shoppers {
			close(allDone)
		}
	}
	b.onCoupon.Store(&handler)
	defer b.onCoupon.Store(nil)

	area, ok := b.plan.Area(store.Boys)
	if !ok {
		return PipelineReport{}, fmt.Errorf("bench: the plan has no Boys department")
	}
	in := area.Rect.Min
	customers := b.catalog.Customers()
	dwellMoves := int(b.cfg.FocusDwell/time.Second) + 1 // the move that completes the dwell
	ts := time.Now().Unix()
	var buf []byte
	events, moves := 0, 0
	publish := func(topic string, payload []byte) error {
		events++
		return b.br.Publish(ctx, topic, payload)
	}
	focusBefore := b.pipeline.Counts().Focus

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range opts.Shoppers {
		id := customers[i%len(customers)].ID
		// A customer's next visit comes after the last one: a focus with the
		// same shopper, department and ts would be the same focus delivered
		// again (FOCUS_DEDUP_WINDOW), not a new one.
		visit := ts + int64(i/len(customers)*(opts.Linger+1))
		buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: visit})
		if err := publish(b.cfg.EntryTopic, buf); err != nil {
			return PipelineReport{}, err
		}
		for m := range opts.Linger {
			if m+1 == dwellMoves {
				mu.Lock()
				sentAt[id] = time.Now()
				mu.Unlock()
			}
			buf = event.AppendMove(buf[:0], event.Move{ID: id, TS: visit + int64(m), X: in.X, Y: in.Y})
			if err := publish(b.cfg.MoveTopic, buf); err != nil {
				return PipelineReport{}, err
			}
			moves++
		}
		buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: visit + int64(opts.Linger)})
		if err := publish(b.cfg.ExitTopic, buf); err != nil {
			return PipelineReport{}, err
		}
	}
	timeout := time.After(10 * time.Second) // some focus events may get no coupon
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	var dwellElapsed time.Duration
waitFocus:
	for {
		if b.pipeline.Counts().Focus-focusBefore >= int64(opts.Shoppers) {
			dwellElapsed = time.Since(start)
			break
		}
		select {
		case <-poll.C:
		case <-timeout:
			break waitFocus
		case <-ctx.Done():
			break waitFocus
		}
	}
	select {
	case <-allDone:
	case <-timeout:
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	mu.Lock()
	defer mu.Unlock()
	r := PipelineReport{
		Events:          events,
		Moves:           moves,
		Predictions:     received,
		Elapsed:         elapsed,
		DwellElapsed:    dwellElapsed,
		AllocBytesPerEv: float64(after.TotalAlloc-before.TotalAlloc) / float64(events),
		AllocsPerEv:     float64(after.Mallocs-before.Mallocs) / float64(events),
		AllocsPerMove:   float64(after.Mallocs-before.Mallocs) / float64(max(moves, 1)),
		Focus:           int(b.pipeline.Counts().Focus - focusBefore),
	}
	r.LatencyP50, r.LatencyP99, r.LatencyMax = percentiles(lat)
	return r, nil
}

// percentiles sorts d and returns its p50, p99 and max (zeros when empty).
func percentiles(d []time.Duration) (p50, p99, maxd time.Duration) {
	slices.Sort(d)
	n := len(d)
	if n == 0 {
		return 0, 0, 0
	}
	return d[n/2], d[n*99/100], d[n-1]
}
