// Package loop owns the coupon loop's second half: the offers (every
// Prediction Results Message on the prediction topic), the redemptions that
// come back (REDEEM_TOPIC and POST /redeem), the offers ledger that matches
// them within REDEEM_WINDOW of event time, the history appended as
// coupon_history.csv rows (HISTORY_FILE; in Redis too with several
// instances), and the experiment's accounting per arm (/metrics and
// GET /api/experiment).
package loop

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
)

// Subscriber delivers the messages of a topic filter to a callback on the
// broker's goroutine; payload is only valid during the call.
type Subscriber interface {
	Subscribe(filter string, h func(topic string, payload []byte)) error
}

// Publisher publishes on the broker.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Parts are what the loop works with besides its Config.
type Parts struct {
	Experiment      experiment.Config
	FocusTopic      string // FOCUS_EVENT_TOPIC_NAME
	PredictionTopic string // COUPON_PREDICTION_TOPIC_NAME
	HistoryPath     string // HISTORY_FILE: "" keeps no file
	// Redis holds the open offers and the history when several instances
	// share the work (DWELL_STATE=redis); nil keeps them in memory.
	Redis       redis.UniversalClient
	RedisPrefix string
	// Pub takes POST /redeem's redemptions to REDEEM_TOPIC, so that every
	// instance sees them as it sees the topic's; nil (no broker, a testing
	// mode) handles them here.
	Pub        Publisher
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// queueSize bounds the offers and redemptions waiting for the worker; a
// full queue drops and counts.
const queueSize = 8192

// syncEvery is how often appended rows are written out and fsynced: a crash
// loses at most the rows settled in the last second.
const syncEvery = time.Second

// redisHistoryRows bounds the history list in Redis: the newest rows are kept.
const redisHistoryRows = 1_000_000

// logEvery is how often a kind of problem is logged, at most.
const logEvery = 10 * time.Second

// opTimeout bounds one ledger call in Redis.
const opTimeout = 2 * time.Second

// item is an offer or a redemption for the worker.
type item struct {
	redemption bool
	customer   string
	coupon     int
	ts         int64
}

// Loop is the offers ledger, the history and the experiment's accounting.
type Loop struct {
	cfg     Config
	p       Parts
	log     *ratelog.Logger
	ledger  ledger
	history *csvdir.HistoryLog // nil: no file
	queue   chan item

	// clock is the event time: the latest offer's ts. Offers wait
	// REDEEM_WINDOW of it, so a simulator running faster than the wall
	// clock closes windows as fast. Redemptions do not move it: a till's
	// clock must not expire everyone's offers. Only the worker touches it.
	clock int64

	historyKey string // Redis list of the history rows; "" in memory
	usedKey    string // Redis hash: arm → offers used, every instance's
	dirty      bool   // rows appended since the last sync; worker only

	closeOnce sync.Once
	m         metrics
}

// New builds the loop and opens the history file.
func New(cfg Config, p Parts) (*Loop, error) {
	l := &Loop{cfg: cfg, p: p, log: ratelog.New(p.Log, logEvery), queue: make(chan item, queueSize)}
	if p.Redis != nil {
		l.ledger = newRedisLedger(p.Redis, p.RedisPrefix, cfg.MaxOpenOffers, cfg.Window)
		l.historyKey = p.RedisPrefix + "{loop}:history"
		l.usedKey = p.RedisPrefix + "{loop}:used"
	} else {
		l.ledger = newMemLedger(cfg.MaxOpenOffers)
	}
	if p.HistoryPath != "" {
		h, err := csvdir.OpenHistoryLog(p.HistoryPath)
		if err != nil {
			return nil, fmt.Errorf("loop: HISTORY_FILE=%s: %w", p.HistoryPath, err)
		}
		if h.Repaired > 0 {
			p.Log.Warn("history file: a torn last row cut off", "file", p.HistoryPath, "bytes", h.Repaired)
		}
		l.history = h
	}
	l.m = newMetrics(p.Registerer, l)
	return l, nil
}

// Subscribe follows the focus, prediction and redeem topics on sub. Call it
// before the pipeline publishes, so that no offer goes unseen.
func (l *Loop) Subscribe(sub Subscriber) error {
	for _, t := range []struct {
		topic string
		h     func(string, []byte)
	}{{l.p.FocusTopic, l.onFocus}, {l.p.PredictionTopic, l.onOffer}, {l.cfg.RedeemTopic, l.onRedeem}} {
		if err := sub.Subscribe(t.topic, t.h); err != nil {
			return fmt.Errorf("loop: subscribe %s: %w", t.topic, err)
		}
	}
	return nil
}

func (l *Loop) arm(customer string) experiment.Arm { return l.p.Experiment.Assign(customer) }

// onFocus counts a focus event for its shopper's arm. Payloads the pipeline
// refuses are its to count.
func (l *Loop) onFocus(_ string, payload []byte) {
	f, err := event.DecodeFocus(payload)
	if err != nil {
		return
	}
	l.m.focus.WithLabelValues(string(l.arm(f.ID))).Inc()
}

// onOffer takes a coupon offered: counted for its arm, and queued for the
// ledger.
func (l *Loop) onOffer(_ string, payload []byte) {
	o, err := event.DecodeOffer(payload)
	if err != nil {
		l.m.rejected.WithLabelValues(sourceOffer, string(event.ReasonOf(err))).Inc()
		l.log.Log(slog.LevelWarn, "offer_rejected", "prediction message refused", "error", err)
		return
	}
	l.m.coupons.WithLabelValues(string(l.arm(o.CustomerID))).Inc()
	l.enqueue(item{customer: o.CustomerID, coupon: o.CouponID, ts: o.TS})
}

// onRedeem takes a redemption from the topic.
func (l *Loop) onRedeem(_ string, payload []byte) {
	r, err := event.DecodeRedemption(payload)
	if err != nil {
		l.m.rejected.WithLabelValues(sourceTopic, string(event.ReasonOf(err))).Inc()
		l.log.Log(slog.LevelWarn, "redemption_rejected", "redemption refused", "source", sourceTopic, "error", err)
		return
	}
	l.takeRedemption(r)
}

// takeRedemption counts a valid redemption for its arm and queues it.
func (l *Loop) takeRedemption(r event.Redemption) bool {
	l.m.redemptions.WithLabelValues(string(l.arm(r.ID))).Inc()
	return l.enqueue(item{redemption: true, customer: r.ID, coupon: r.CouponID, ts: r.TS})
}

// enqueue hands it to the worker without blocking the broker: a full queue
// drops it, counted.
func (l *Loop) enqueue(it item) bool {
	select {
	case l.queue <- it:
		return true
	default:
		kind := "offer"
		if it.redemption {
			kind = "redemption"
		}
		l.m.dropped.WithLabelValues(kind).Inc()
		l.log.Log(slog.LevelWarn, "queue_full", "loop queue full: dropped", "kind", kind, "customer_id", it.customer)
		return false
	}
}

// Run matches and settles until ctx is done, writing the history out every
// second; then it takes what is queued, syncs and closes the file.
func (l *Loop) Run(ctx context.Context) error {
	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	for {
		select {
		case it := <-l.queue:
			l.handle(ctx, it)
		case <-tick.C:
			l.expire(ctx)
			l.sync()
		case <-ctx.Done():
			l.drain()
			return l.Close()
		}
	}
}

// drain handles what is queued at shutdown, on a short context of its own.
func (l *Loop) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for {
		select {
		case it := <-l.queue:
			l.handle(ctx, it)
		default:
			return
		}
	}
}

// Close writes out and closes the history file. Offers still open stay
// unsettled: in Redis another instance (or the next start) settles them; in
// memory they are lost, and the log says how many. It is idempotent.
func (l *Loop) Close() error {
	var err error
	l.closeOnce.Do(func() {
		if l.ledger != nil {
			if _, isMem := l.ledger.(*memLedger); isMem {
				if n, _ := l.ledger.size(context.Background()); n > 0 {
					l.p.Log.Info("offers still waiting for a redemption at shutdown are not written", "open_offers", n)
				}
			}
		}
		if l.history != nil {
			if err = l.history.Close(); err != nil {
				err = fmt.Errorf("loop: history file %s: %w", l.p.HistoryPath, err)
			}
		}
	})
	return err
}

func (l *Loop) handle(ctx context.Context, it item) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if !it.redemption {
		if it.ts > l.clock {
			l.clock = it.ts
			l.expire(ctx)
		}
		evicted, err := l.ledger.open(ctx, offer{customer: it.customer, coupon: it.coupon, ts: it.ts})
		if err != nil {
			l.ledgerError(err)
			return
		}
		for _, s := range evicted {
			l.settle(ctx, s)
		}
		return
	}
	o, found, dup, err := l.ledger.redeem(ctx, it.customer, it.coupon, it.ts)
	switch {
	case err != nil:
		l.ledgerError(err)
	case dup:
	case !found:
		l.m.matched.WithLabelValues(redeemUnmatched).Inc()
		l.log.Log(slog.LevelInfo, "redemption_unmatched", "redemption of no open offer: dropped",
			"customer_id", it.customer, "coupon_id", it.coupon, "ts", it.ts)
	case it.ts-o.ts > int64(l.cfg.Window/time.Second):
		// Its window passed before the clock said so (no offer since):
		// too late to count.
		l.m.matched.WithLabelValues(redeemUnmatched).Inc()
		l.settle(ctx, settled{offer: o, why: outcomeExpired})
	default:
		l.m.matched.WithLabelValues(redeemMatched).Inc()
		l.settle(ctx, settled{offer: o, used: true, why: outcomeUsed})
	}
}

// expire settles the offers whose window passed on the event clock.
func (l *Loop) expire(ctx context.Context) {
	if l.clock == 0 {
		return
	}
	cutoff := l.clock - int64(l.cfg.Window/time.Second)
	for {
		out, err := l.ledger.expire(ctx, cutoff)
		if err != nil {
			l.ledgerError(err)
			return
		}
		for _, s := range out {
			l.settle(ctx, s)
		}
		if len(out) < expireBatch {
			return
		}
	}
}

func (l *Loop) ledgerError(err error) {
	l.m.errors.WithLabelValues("ledger").Inc()
	l.log.Log(slog.LevelWarn, "ledger_error", "offers ledger failed", "error", err)
}

// settle writes one history row for an offer whose wait ended.
func (l *Loop) settle(ctx context.Context, s settled) {
	l.m.settled.WithLabelValues(s.why).Inc()
	arm := string(l.arm(s.customer))
	if s.used {
		l.m.used.WithLabelValues(arm).Inc()
	}
	row := store.HistoryEntry{CustomerID: s.customer, CouponID: s.coupon, Day: store.DayOf(s.ts), Used: s.used}
	if l.history != nil {
		if err := l.history.Append(row); err != nil {
			l.m.errors.WithLabelValues("history_file").Inc()
			l.log.Log(slog.LevelError, "history_file", "history row not written", "file", l.p.HistoryPath, "error", err)
		} else {
			l.dirty = true
		}
	}
	if l.historyKey != "" {
		_, err := l.p.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.RPush(ctx, l.historyKey, csvdir.HistoryLine(row))
			p.LTrim(ctx, l.historyKey, -redisHistoryRows, -1)
			if s.used {
				p.HIncrBy(ctx, l.usedKey, arm, 1)
			}
			return nil
		})
		if err != nil {
			l.m.errors.WithLabelValues("history_redis").Inc()
			l.log.Log(slog.LevelWarn, "history_redis", "history row not kept in Redis", "error", err)
		}
	}
	l.m.rows.Inc()
}

// sync writes out and fsyncs the rows appended since the last sync.
func (l *Loop) sync() {
	if l.history == nil || !l.dirty {
		return
	}
	if err := l.history.Sync(); err != nil {
		l.m.errors.WithLabelValues("history_file").Inc()
		l.log.Log(slog.LevelError, "history_file", "history file not synced", "file", l.p.HistoryPath, "error", err)
		return
	}
	l.dirty = false
}
