package loop

import (
	"context"
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/storeflow/storeflow/experiment"
)

// z95 is the standard normal quantile of a two-sided 95 % interval.
const z95 = 1.959963984540054

// Interval is a proportion with its 95 % Wilson score interval.
type Interval struct {
	Value float64 `json:"value"`
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
}

// Wilson returns k successes in n trials as a proportion with its 95 %
// Wilson score interval, which, unlike the normal approximation, stays
// within [0, 1] and means something for small n and for k near 0 or n. No
// trials: all zero. k is clipped to [0, n].
func Wilson(k, n int64) Interval {
	if n <= 0 {
		return Interval{}
	}
	k = min(max(k, 0), n)
	nf := float64(n)
	p := float64(k) / nf
	z2 := z95 * z95
	den := 1 + z2/nf
	center := (p + z2/(2*nf)) / den
	half := z95 * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / den
	return Interval{Value: p, Low: max(0, center-half), High: min(1, center+half)}
}

// ArmReport is one arm's figures since start.
type ArmReport struct {
	Arm         experiment.Arm `json:"arm"`
	Focus       int64          `json:"focus"`                 // focus events
	Coupons     int64          `json:"coupons"`               // coupons offered
	Redemptions int64          `json:"redemptions"`           // valid redemptions, matched or not
	OffersUsed  int64          `json:"offers_used"`           // offers redeemed within the window
	Rate        Interval       `json:"redemption_rate"`       // offers used per coupon offered
	PerFocus    Interval       `json:"redemptions_per_focus"` // redemptions per focus event: comparable with the holdout
}

// Report is GET /api/experiment's answer.
type Report struct {
	Settings      Settings    `json:"settings"`
	WindowSeconds int64       `json:"redeem_window_seconds"`
	Arms          []ArmReport `json:"arms"`
}

// Settings are the experiment's settings, as set.
type Settings struct {
	HoldoutFraction float64 `json:"holdout_fraction"`
	ModelBFile      string  `json:"model_b_file"`
	ModelBFraction  float64 `json:"model_b_fraction"`
	Salt            string  `json:"salt"`
}

// Report returns the figures per arm. The counts are the topics' as this
// instance saw them (every instance sees every message); the offers used,
// with several instances, every instance's (from Redis).
func (l *Loop) Report(ctx context.Context) Report {
	e := l.p.Experiment
	r := Report{
		Settings:      Settings{HoldoutFraction: e.HoldoutFraction, ModelBFile: e.ModelBFile, ModelBFraction: e.ModelBFraction, Salt: e.Salt},
		WindowSeconds: int64(l.cfg.Window.Seconds()),
	}
	var shared map[string]string
	if l.usedKey != "" {
		shared, _ = l.p.Redis.HGetAll(ctx, l.usedKey).Result() // unreachable Redis: this instance's count
	}
	for _, a := range experiment.Arms {
		ar := ArmReport{
			Arm:         a,
			Focus:       count(l.m.focus, a),
			Coupons:     count(l.m.coupons, a),
			Redemptions: count(l.m.redemptions, a),
			OffersUsed:  count(l.m.used, a),
		}
		if v, ok := shared[string(a)]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				ar.OffersUsed = n
			}
		}
		ar.Rate = Wilson(ar.OffersUsed, ar.Coupons)
		ar.PerFocus = Wilson(ar.Redemptions, ar.Focus)
		r.Arms = append(r.Arms, ar)
	}
	return r
}

// count reads one arm's counter.
func count(c *prometheus.CounterVec, a experiment.Arm) int64 {
	var m dto.Metric
	if c.WithLabelValues(string(a)).Write(&m) != nil {
		return 0
	}
	return int64(m.GetCounter().GetValue())
}
