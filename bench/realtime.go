package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/pipeline"
	"github.com/storeflow/storeflow/store"
)

// RealtimeReport is shoppers walking at real speed: one move a second each,
// event time = wall time.
type RealtimeReport struct {
	Shoppers      int
	Known         int           // shoppers with a catalog customer's id (the rest get no coupon: unknown_customer)
	Elapsed       time.Duration // publishing, wall time
	Published     int           // enter, move and exit events published
	Moves         int           // of which moves
	Accepted      int           // enter, move and exit events accepted (storeflow_events_accepted_total)
	Rejected      int           // enter, move and exit events rejected (storeflow_events_rejected_total)
	Dropped       int           // events dropped, every queue (storeflow_events_dropped_total)
	DroppedIntake int           // of which refused at intake (queues dwell and shutdown): events never accepted
	PrefetchSkips int           // of which context prefetches skipped (queue prefetch full): no event lost
	Focus         int           // focus events detected (storeflow_focus_detected_total)
	Coupons       int           // coupons published (storeflow_coupons_published_total)
	Unknown       int           // focus outcomes unknown_customer
	Drained       bool          // every event accounted for and every focus settled before the deadline
	LagP99        time.Duration // how late each tick's batch finished after its due time
	LagMax        time.Duration //
	LatencyP50    time.Duration // focus-completing move published → coupon received
	LatencyP99    time.Duration //
	LatencyMax    time.Duration //
	RSSBefore     int64         // VmRSS before the shoppers, bytes; -1 where unknown
	RSSDuring     int64         // VmRSS with every shopper walking
	PeakRSS       int64         // VmHWM at the end
}

// Balanced says every published event was accepted, dropped at intake or rejected.
func (r RealtimeReport) Balanced() bool {
	return r.Published == r.Accepted+r.DroppedIntake+r.Rejected
}

// RSSPerShopper is the resident memory the real-time shoppers added, per
// shopper; -1 where unknown.
func (r RealtimeReport) RSSPerShopper() float64 {
	if r.RSSBefore < 0 || r.RSSDuring < 0 || r.Shoppers == 0 {
		return -1
	}
	return float64(r.RSSDuring-r.RSSBefore) / float64(r.Shoppers)
}

// ticksPerSecond spreads the shoppers' phases over the second.
const ticksPerSecond = 100

// realtime walks RealtimeShoppers shoppers at real speed for Duration:
// a publisher goroutine per core, woken every 1/ticksPerSecond s, publishes
// the moves of its shoppers whose phase falls in that tick. Each shopper
// enters, moves once a second in Boys for RealtimeLinger seconds, leaves and
// comes back.
func (b *bench) realtime(ctx context.Context, opts Options, onCoupon *atomic.Pointer[func(string, time.Time)]) (RealtimeReport, error) {
	n, cycle := opts.RealtimeShoppers, max(opts.RealtimeLinger, 2)
	area, ok := b.plan.Area(store.Boys)
	if !ok {
		return RealtimeReport{}, fmt.Errorf("bench: the plan has no Boys department")
	}
	in := area.Rect.Min
	// Shoppers walk at once, so each needs an id of its own; the catalog
	// has fewer customers than that, and the rest are unknown to the
	// central: detected, but no coupon.
	customers := b.catalog.Customers()
	known := min(n, len(customers))
	ids := make([]string, n)
	index := make(map[string]int, known)
	for i := range n {
		if i < known {
			ids[i] = customers[i].ID
			index[ids[i]] = i
		} else {
			ids[i] = "bench-" + strconv.Itoa(i)
		}
	}
	lastMove := make([]atomic.Int64, known) // unix ns of each known shopper's latest move
	var (
		mu  sync.Mutex
		lat []time.Duration
	)
	handler := func(id string, now time.Time) {
		i, ok := index[id]
		if !ok {
			return
		}
		if t := lastMove[i].Load(); t != 0 {
			mu.Lock()
			lat = append(lat, now.Sub(time.Unix(0, t)))
			mu.Unlock()
		}
	}
	onCoupon.Store(&handler)
	defer onCoupon.Store(nil)

	runtime.GC()
	r := RealtimeReport{Shoppers: n, Known: known, RSSBefore: procStatus("VmRSS")}
	before := b.pipeline.Counts()

	workers := runtime.GOMAXPROCS(0)
	tick := time.Second / ticksPerSecond
	ticks := int(opts.Duration / tick)
	start := time.Now().Add(50 * time.Millisecond)
	type result struct {
		published, moves int
		lags             []time.Duration
		err              error
	}
	results := make([]result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		// This worker's shoppers, by the tick of the second they move in.
		bySlot := make([][]int, ticksPerSecond)
		for i := w; i < n; i += workers {
			s := i * ticksPerSecond / n
			bySlot[s] = append(bySlot[s], i)
		}
		wg.Go(func() {
			res := &results[w]
			res.lags = make([]time.Duration, 0, ticks)
			timer := time.NewTimer(0)
			defer timer.Stop()
			<-timer.C
			var buf []byte
			publish := func(topic string, payload []byte) bool {
				if err := b.br.Publish(ctx, topic, payload); err != nil {
					res.err = err
					return false
				}
				res.published++
				return true
			}
			for k := range ticks {
				due := start.Add(time.Duration(k) * tick)
				if d := time.Until(due); d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-ctx.Done():
						res.err = ctx.Err()
						return
					}
				}
				sec := k / ticksPerSecond
				ts := time.Now().Unix()
				for _, i := range bySlot[k%ticksPerSecond] {
					id := ids[i]
					step := (sec + i%cycle) % cycle
					if step == 0 || sec == 0 {
						buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: ts})
						if !publish(b.cfg.EntryTopic, buf) {
							return
						}
					}
					if i < known {
						lastMove[i].Store(time.Now().UnixNano())
					}
					buf = event.AppendMove(buf[:0], event.Move{ID: id, TS: ts, X: in.X, Y: in.Y})
					if !publish(b.cfg.MoveTopic, buf) {
						return
					}
					res.moves++
					if step == cycle-1 {
						buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: ts})
						if !publish(b.cfg.ExitTopic, buf) {
							return
						}
					}
				}
				res.lags = append(res.lags, time.Since(due))
			}
		})
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.RSSDuring = procStatus("VmRSS") // every shopper still tracked: the last visits did not end
	var lags []time.Duration
	for _, res := range results {
		if res.err != nil {
			return r, fmt.Errorf("bench: real time: %w", res.err)
		}
		r.Published += res.published
		r.Moves += res.moves
		lags = append(lags, res.lags...)
	}
	_, r.LagP99, r.LagMax = percentiles(lags)

	// Wait, bounded, until the pipeline has accounted for every event and
	// settled every focus.
	var d pipeline.Counts
	deadline := time.Now().Add(10 * time.Second)
	for {
		d = b.pipeline.Counts().Sub(before)
		r.Drained = int(d.Accepted+d.Rejected+d.DroppedIntake) == r.Published && d.Outcomes+d.DroppedFocus >= d.Focus
		if r.Drained || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Accepted, r.Rejected = int(d.Accepted), int(d.Rejected)
	r.Dropped, r.DroppedIntake, r.PrefetchSkips = int(d.Dropped), int(d.DroppedIntake), int(d.PrefetchSkipped)
	r.Focus, r.Coupons, r.Unknown = int(d.Focus), int(d.Coupons), int(d.UnknownCustomer)
	r.PeakRSS = procStatus("VmHWM")
	mu.Lock()
	r.LatencyP50, r.LatencyP99, r.LatencyMax = percentiles(lat)
	mu.Unlock()
	return r, nil
}

// procStatus reads a kB field of /proc/self/status in bytes; -1 where there
// is none (not Linux).
func procStatus(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok || string(k) != key {
			continue
		}
		f := bytes.Fields(v)
		if len(f) == 0 {
			return -1
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return -1
		}
		return kb * 1024
	}
	return -1
}
