package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

// BenchOptions sizes a bench run.
type BenchOptions struct {
	Shoppers int // visits to play
	Linger   int // moves each shopper makes inside the department (more than the dwell)
}

// BenchReport is what a bench run measured.
type BenchReport struct {
	Events          int           // enter, move and exit events published
	Focus           int           // focus events detected
	Predictions     int           // coupons published
	Elapsed         time.Duration // from the first event to the last prediction (or timeout)
	LatencyP50      time.Duration // focus-completing move published → prediction received
	LatencyP99      time.Duration //
	LatencyMax      time.Duration //
	AllocBytesPerEv float64       // heap bytes allocated per event, whole process
	AllocsPerEv     float64       // heap allocations per event, whole process
}

// Bench plays scripted visits through the running app's own broker, as fast
// as the pipeline accepts them (PIPELINE_OVERFLOW=block paces the publisher),
// and measures throughput, the latency from the move that completes a focus to
// the coupon, and allocations. The app must be built with the simulator off;
// Bench runs it and stops it.
func (a *App) Bench(ctx context.Context, opts BenchOptions) (BenchReport, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-runErr:
		return BenchReport{}, fmt.Errorf("bench: app stopped: %w", err)
	}

	var (
		mu       sync.Mutex
		sentAt   = make(map[string]time.Time, opts.Shoppers)
		lat      []time.Duration
		allDone  = make(chan struct{})
		received int
	)
	err := a.conn.Subscribe(a.cfg.Pipeline.PredictionTopic, func(_ string, payload []byte) {
		now := time.Now()
		var p struct{ Customer struct{ ID string } }
		if json.Unmarshal(payload, &p) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if t, ok := sentAt[p.Customer.ID]; ok {
			lat = append(lat, now.Sub(t))
			delete(sentAt, p.Customer.ID)
		}
		received++
		if received == opts.Shoppers {
			close(allDone)
		}
	})
	if err != nil {
		return BenchReport{}, err
	}

	area, ok := a.plan.Area(store.Boys)
	if !ok {
		return BenchReport{}, fmt.Errorf("bench: the plan has no Boys department")
	}
	in := area.Rect.Min
	customers := a.catalog.Customers()
	dwellMoves := int(a.cfg.Pipeline.FocusDwell/time.Second) + 1 // the move that completes the dwell
	ts := time.Now().Unix()
	var buf []byte
	events := 0
	publish := func(topic string, b []byte) error {
		events++
		return a.conn.Publish(ctx, topic, b)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range opts.Shoppers {
		id := customers[i%len(customers)].ID
		buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: ts})
		if err := publish(a.cfg.Pipeline.EntryTopic, buf); err != nil {
			return BenchReport{}, err
		}
		for m := range opts.Linger {
			if m+1 == dwellMoves {
				mu.Lock()
				sentAt[id] = time.Now()
				mu.Unlock()
			}
			buf = event.AppendMove(buf[:0], event.Move{ID: id, TS: ts + int64(m), X: in.X, Y: in.Y})
			if err := publish(a.cfg.Pipeline.MoveTopic, buf); err != nil {
				return BenchReport{}, err
			}
		}
		buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: ts + int64(opts.Linger)})
		if err := publish(a.cfg.Pipeline.ExitTopic, buf); err != nil {
			return BenchReport{}, err
		}
	}
	select {
	case <-allDone:
	case <-time.After(10 * time.Second): // some focus events may get no coupon
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	mu.Lock()
	r := BenchReport{
		Events:          events,
		Predictions:     received,
		Elapsed:         elapsed,
		AllocBytesPerEv: float64(after.TotalAlloc-before.TotalAlloc) / float64(events),
		AllocsPerEv:     float64(after.Mallocs-before.Mallocs) / float64(events),
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		r.LatencyP50, r.LatencyP99, r.LatencyMax = lat[n/2], lat[n*99/100], lat[n-1]
	}
	mu.Unlock()
	r.Focus = int(a.metricValue("storeflow_focus_detected_total"))
	cancel()
	if err := <-runErr; err != nil {
		return r, err
	}
	return r, nil
}

func (a *App) metricValue(name string) float64 {
	mfs, err := a.reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// Print writes the report for people.
func (r BenchReport) Print(w io.Writer) {
	secs := r.Elapsed.Seconds()
	fmt.Fprintf(w, "events      %d in %.2fs = %.0f events/s\n", r.Events, secs, float64(r.Events)/secs)
	fmt.Fprintf(w, "focus       %d detected, %d coupons published\n", r.Focus, r.Predictions)
	fmt.Fprintf(w, "latency     move completing the dwell → coupon received: p50 %s  p99 %s  max %s\n",
		r.LatencyP50.Round(time.Microsecond), r.LatencyP99.Round(time.Microsecond), r.LatencyMax.Round(time.Microsecond))
	fmt.Fprintf(w, "allocation  %.0f B and %.1f allocs per event (whole process)\n", r.AllocBytesPerEv, r.AllocsPerEv)
}
