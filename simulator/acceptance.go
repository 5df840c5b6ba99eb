package simulator

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/metric"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/world"
)

// Subscriber is what the acceptance counter needs from the broker. The handler
// must not keep payload after it returns.
type Subscriber interface {
	Subscribe(filter string, h func(topic string, payload []byte)) error
}

// Acceptance plays the shoppers' side of a coupon: when a simulated shopper
// receives one, it decides with the ground-truth probability (world.Truth)
// whether the shopper would use it, and counts coupons received and coupons
// that would be used. It is how the demo shows what a model is worth. Given
// a topic (RedeemOn), a shopper who would use a coupon redeems it there, as a
// till would report it: the demo closes the loop by itself.
type Acceptance struct {
	catalog *store.Catalog
	truth   *world.Truth
	log     *slog.Logger
	every   time.Duration

	mu       sync.Mutex
	rng      *rand.Rand
	received int
	used     int
	expected float64 // sum of the probabilities: the use count without the dice
	random   float64 // sum of the mean probability of the focus's valid coupons: a random pick's expected uses
	valid    []store.Coupon

	// The redemptions waiting for Run to publish them on redeemTopic; nil
	// without RedeemOn.
	redeem      chan event.Redemption
	redeemPub   Publisher
	redeemTopic string

	mReceived, mUsed, mRejected, mUnknown prometheus.Counter
	mExpected, mRandom                    prometheus.Counter
	mRedeemed, mRedeemDropped             prometheus.Counter
}

// redeemQueue bounds the redemptions waiting to be published; beyond, one is
// dropped and counted.
const redeemQueue = 1024

// NewAcceptance builds the counter. seed makes the dice replayable; every is
// how often Run logs the tally.
func NewAcceptance(catalog *store.Catalog, truth *world.Truth, seed int64, every time.Duration, log *slog.Logger, reg prometheus.Registerer) *Acceptance {
	a := &Acceptance{
		catalog: catalog, truth: truth, log: log, every: every,
		rng:            rand.New(rand.NewPCG(uint64(seed), 0x5eed0ffe2)),
		mReceived:      metric.Counter("storeflow_simulator_coupons_received_total", "Coupons received by simulated shoppers."),
		mUsed:          metric.Counter("storeflow_simulator_coupons_used_total", "Coupons the simulated shoppers would use, drawn with the ground-truth probability."),
		mExpected:      metric.Counter("storeflow_simulator_coupons_expected_uses_total", "Sum of the ground-truth probabilities of the coupons received: the expected number of uses."),
		mRandom:        metric.Counter("storeflow_simulator_coupons_random_expected_uses_total", "Sum over the coupons received of the mean ground-truth probability of the department's coupons valid that day: the expected uses of a coupon picked at random, the yardstick."),
		mRejected:      metric.Counter("storeflow_simulator_predictions_rejected_total", "Prediction messages the simulated shoppers could not read."),
		mUnknown:       metric.Counter("storeflow_simulator_predictions_unknown_total", "Prediction messages for a customer or coupon without ground truth (not a simulated shopper)."),
		mRedeemed:      metric.Counter("storeflow_simulator_redemptions_published_total", "Redemptions the simulated shoppers published on REDEEM_TOPIC (the coupons they would use)."),
		mRedeemDropped: metric.Counter("storeflow_simulator_redemptions_dropped_total", "Redemptions of the simulated shoppers not published: their queue was full or the publish failed."),
	}
	if reg != nil {
		reg.MustRegister(a.mReceived, a.mUsed, a.mExpected, a.mRandom, a.mRejected, a.mUnknown, a.mRedeemed, a.mRedeemDropped)
	}
	return a
}

// Handle takes one Prediction Results Message. It never blocks for long: one
// decode, one lookup and a die roll under a mutex.
func (a *Acceptance) Handle(_ string, payload []byte) {
	o, err := event.DecodeOffer(payload)
	if err != nil {
		a.mRejected.Inc()
		a.log.Debug("prediction_unreadable", "error", err)
		return
	}
	ctx := context.Background()
	prefs, okP := a.truth.Preferences(o.CustomerID)
	c, errC := a.catalog.Customer(ctx, o.CustomerID)
	cp, errCp := a.catalog.Coupon(ctx, o.CouponID)
	if !okP || errC != nil || errCp != nil {
		a.mUnknown.Inc()
		return
	}
	p := world.Probability(prefs, &c, &cp)
	a.mu.Lock()
	random := a.randomPick(ctx, prefs, &c, &cp, store.DayOf(o.TS))
	used := a.rng.Float64() < p
	a.received++
	a.expected += p
	a.random += random
	if used {
		a.used++
	}
	a.mu.Unlock()
	a.mReceived.Inc()
	a.mExpected.Add(p)
	a.mRandom.Add(random)
	if used {
		a.mUsed.Inc()
		if a.redeem != nil {
			select {
			case a.redeem <- event.Redemption{ID: o.CustomerID, TS: o.TS, CouponID: o.CouponID}:
			default:
				a.mRedeemDropped.Inc()
			}
		}
	}
}

// RedeemOn makes the shoppers redeem the coupons they would use: Run
// publishes each on topic, at the offer's time. Call it before Subscribe.
func (a *Acceptance) RedeemOn(pub Publisher, topic string) {
	a.redeem, a.redeemPub, a.redeemTopic = make(chan event.Redemption, redeemQueue), pub, topic
}

// randomPick is the probability that the shopper uses a coupon picked at
// random among the department's coupons valid on day (the one received
// stands in when the catalog has none that day). a.mu is held.
func (a *Acceptance) randomPick(ctx context.Context, prefs *store.Preferences, c *store.Customer, got *store.Coupon, day store.Day) float64 {
	valid, err := a.catalog.ValidCoupons(ctx, got.Department, day, a.valid[:0])
	a.valid = valid
	if err != nil || len(valid) == 0 {
		return world.Probability(prefs, c, got)
	}
	sum := 0.0
	for i := range valid {
		sum += world.Probability(prefs, c, &valid[i])
	}
	return sum / float64(len(valid))
}

// Tally is the count so far.
type Tally struct {
	Received, Used int
	Expected       float64
	Random         float64 // a random pick's expected uses for the same foci
}

// Tally returns the count so far.
func (a *Acceptance) Tally() Tally {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Tally{Received: a.received, Used: a.used, Expected: a.expected, Random: a.random}
}

// Subscribe starts taking the prediction topic's messages. Call it before
// the simulator runs, so no shopper's first coupon goes uncounted.
func (a *Acceptance) Subscribe(sub Subscriber, topic string) error {
	if err := sub.Subscribe(topic, a.Handle); err != nil {
		return fmt.Errorf("simulator: acceptance: %w", err)
	}
	return nil
}

// Run publishes the redemptions and logs the tally every a.every until ctx
// is done.
func (a *Acceptance) Run(ctx context.Context) error {
	tick := time.NewTicker(a.every)
	defer tick.Stop()
	last := Tally{}
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			a.logTally(last)
			return nil
		case <-tick.C:
			last = a.logTally(last)
		case r := <-a.redeem: // nil without RedeemOn: never ready
			buf = event.AppendRedemption(buf[:0], r)
			if err := a.redeemPub.Publish(ctx, a.redeemTopic, buf); err != nil {
				a.mRedeemDropped.Inc()
				a.log.Debug("redemption_not_published", "error", err)
				continue
			}
			a.mRedeemed.Inc()
		}
	}
}

func (a *Acceptance) logTally(last Tally) Tally {
	t := a.Tally()
	if t.Received == last.Received {
		return t
	}
	a.log.Info("coupon acceptance", "received", t.Received, "would_use", t.Used,
		"use_rate", rate(t.Used, t.Received), "expected_use_rate", round3(t.Expected/float64(t.Received)),
		"random_pick_use_rate", round3(t.Random/float64(t.Received)))
	return t
}

func rate(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return round3(float64(n) / float64(d))
}

func round3(x float64) float64 { return float64(int(x*1000+0.5)) / 1000 }
