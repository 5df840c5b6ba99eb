package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Ratio is the pipeline's move throughput over the broker's ceiling.
func (r Report) Ratio() float64 {
	if c := r.Ceiling.MovesPerSec(); c > 0 {
		return r.Pipeline.MovesPerSec() / c
	}
	return 0
}

// Print writes the report for people.
func (r Report) Print(w io.Writer) {
	us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	c, p, rt := r.Ceiling, r.Pipeline, r.Realtime
	fmt.Fprintf(w, "ceiling     %d moves in %.2fs = %.0f moves/s (inline client, decode only)\n",
		c.Moves, c.Elapsed.Seconds(), c.MovesPerSec())
	fmt.Fprintf(w, "pipeline    %d events (%d moves) in %.2fs = %.0f events/s, %.0f moves/s, %.0f focus/s, %.0f coupons/s\n",
		p.Events, p.Moves, p.Elapsed.Seconds(), perSec(p.Events, p.Elapsed), p.MovesPerSec(),
		perSec(p.Focus, p.Elapsed), perSec(p.Predictions, p.Elapsed))
	fmt.Fprintf(w, "focus       %d detected, %d coupons published\n", p.Focus, p.Predictions)
	fmt.Fprintf(w, "latency     move completing the dwell → coupon received: p50 %s  p99 %s  max %s\n",
		us(p.LatencyP50), us(p.LatencyP99), us(p.LatencyMax))
	fmt.Fprintf(w, "allocation  %.0f B and %.1f allocs per event, %.1f allocs per move (whole process)\n",
		p.AllocBytesPerEv, p.AllocsPerEv, p.AllocsPerMove)
	fmt.Fprintf(w, "ratio       pipeline/ceiling %.3f (moves/s over moves/s)\n", r.Ratio())
	fmt.Fprintf(w, "real time   %d shoppers (%d catalog customers), one move/s each, for %.1fs\n",
		rt.Shoppers, rt.Known, rt.Elapsed.Seconds())
	fmt.Fprintf(w, "  lag       tick batch finished after its due time: p99 %s  max %s\n", us(rt.LagP99), us(rt.LagMax))
	fmt.Fprintf(w, "  latency   move completing the dwell → coupon received: p50 %s  p99 %s  max %s\n",
		us(rt.LatencyP50), us(rt.LatencyP99), us(rt.LatencyMax))
	balance := "balanced"
	if !rt.Balanced() {
		balance = "NOT balanced"
	}
	fmt.Fprintf(w, "  count     published %d (%d moves) = accepted %d + dropped at intake %d + rejected %d: %s\n",
		rt.Published, rt.Moves, rt.Accepted, rt.DroppedIntake, rt.Rejected, balance)
	fmt.Fprintf(w, "            dropped (all queues) %d (prefetches skipped %d), focus detected %d, coupons published %d, unknown customers %d, drained %t\n",
		rt.Dropped, rt.PrefetchSkips, rt.Focus, rt.Coupons, rt.Unknown, rt.Drained)
	if rt.PeakRSS < 0 {
		fmt.Fprintf(w, "  memory    peak RSS n/a, RSS per shopper n/a\n")
	} else {
		fmt.Fprintf(w, "  memory    peak RSS %.1f MiB, RSS %.1f → %.1f MiB = %.0f B per shopper\n",
			mib(rt.PeakRSS), mib(rt.RSSBefore), mib(rt.RSSDuring), rt.RSSPerShopper())
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// JSON is the report as one object, for machines. Unknown memory figures are null.
func (r Report) JSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p, rt := r.Pipeline, r.Realtime
	var peak, perShopper any // null where /proc/self/status is not
	if rt.PeakRSS >= 0 {
		peak = rt.PeakRSS
	}
	if rt.RSSBefore >= 0 && rt.RSSDuring >= 0 {
		perShopper = rt.RSSPerShopper()
	}
	return json.Marshal(map[string]any{
		"ceiling_moves_per_s":             r.Ceiling.MovesPerSec(),
		"pipeline_moves_per_s":            p.MovesPerSec(),
		"pipeline_focus_per_s":            perSec(p.Focus, p.Elapsed),
		"pipeline_coupons_per_s":          perSec(p.Predictions, p.Elapsed),
		"pipeline_p50_focus_to_coupon_ms": ms(p.LatencyP50),
		"pipeline_p99_focus_to_coupon_ms": ms(p.LatencyP99),
		"pipeline_max_focus_to_coupon_ms": ms(p.LatencyMax),
		"pipeline_allocs_per_move":        p.AllocsPerMove,
		"ratio":                           r.Ratio(),
		"realtime_shoppers":               rt.Shoppers,
		"realtime_seconds":                rt.Elapsed.Seconds(),
		"lag_p99_ms":                      ms(rt.LagP99),
		"lag_max_ms":                      ms(rt.LagMax),
		"p50_focus_to_coupon_ms":          ms(rt.LatencyP50),
		"p99_focus_to_coupon_ms":          ms(rt.LatencyP99),
		"max_focus_to_coupon_ms":          ms(rt.LatencyMax),
		"published":                       rt.Published,
		"accepted":                        rt.Accepted,
		"rejected":                        rt.Rejected,
		"dropped":                         rt.Dropped,
		"dropped_intake":                  rt.DroppedIntake,
		"prefetch_skipped":                rt.PrefetchSkips,
		"balanced":                        rt.Balanced(),
		"drained":                         rt.Drained,
		"focus_detected":                  rt.Focus,
		"coupons_published":               rt.Coupons,
		"unknown_customers":               rt.Unknown,
		"peak_rss_bytes":                  peak,
		"rss_bytes_per_shopper":           perShopper,
	})
}

// Print writes the comparison for people.
func (r SharedReport) Print(w io.Writer) {
	us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	for _, run := range []struct {
		name string
		p    PipelineReport
	}{{"memory", r.Memory}, {"redis", r.Redis}} {
		p := run.p
		fmt.Fprintf(w, "%-7s %d events (%d moves): every focus detected in %.2fs = %.0f moves/s; %d focus, %d coupons in %.2fs = %.0f moves/s; move completing the dwell → coupon p50 %s p99 %s\n",
			run.name, p.Events, p.Moves, p.DwellElapsed.Seconds(), p.DwellMovesPerSec(), p.Focus, p.Predictions,
			p.Elapsed.Seconds(), p.MovesPerSec(), us(p.LatencyP50), us(p.LatencyP99))
	}
	per := func(n float64, d int) float64 {
		if d == 0 {
			return 0
		}
		return n / float64(d)
	}
	m, p := r.Memory, r.Redis
	fmt.Fprintf(w, "redis   per move: %.3f script calls (one per event), %.4f round trips (%.1f events per pipeline)\n",
		per(float64(r.Scripts), p.Moves), per(float64(r.RoundTrips), p.Moves), per(float64(p.Events), int(r.RoundTrips)))
	fmt.Fprintf(w, "redis   commands executed (a script's own GET/SET counted): memory run %d = %.2f per coupon (the cache); redis run %d = %.2f per move\n",
		r.MemoryCommands, per(float64(r.MemoryCommands), m.Predictions), r.RedisCommands, per(float64(r.RedisCommands), p.Moves))
	fmt.Fprintf(w, "redis   CPU: memory run %s, redis run %s: the dwell state %.1f µs per move (the difference)\n",
		r.MemoryCPU.Round(time.Millisecond), r.RedisCPU.Round(time.Millisecond), per(float64((r.RedisCPU-r.MemoryCPU).Microseconds()), p.Moves))
	if mm := m.DwellMovesPerSec(); mm > 0 {
		fmt.Fprintf(w, "ratio   redis/memory %.3f (moves/s until every focus was detected)\n", p.DwellMovesPerSec()/mm)
	}
}
