package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/cache"
)

// couponScorer offers one coupon: it scores it 1, the others 0.
type couponScorer struct{ id int }

func (s couponScorer) Score(_ context.Context, _ *store.Customer, coupons []store.Coupon, out []float64) error {
	for i := range coupons {
		out[i] = 0
		if coupons[i].ID == s.id {
			out[i] = 1
		}
	}
	return nil
}

// departmentCouponToday is a department coupon valid on ts's day that covers
// more products than a message lists, and its products, every one.
func departmentCouponToday(t *testing.T, cat *store.Catalog, ts int64, maxProducts int) (store.Coupon, []store.Product) {
	t.Helper()
	ctx := context.Background()
	for _, d := range store.Departments {
		valid, _ := cat.ValidCoupons(ctx, d, store.DayOf(ts), nil)
		for _, c := range valid {
			ps, err := cat.CouponProducts(ctx, c.ID, store.AllProducts)
			if err != nil {
				t.Fatal(err)
			}
			if c.Type == store.DeptCoupon && len(ps) > maxProducts {
				return c, ps
			}
		}
	}
	t.Fatalf("no department coupon with more than %d products runs today in the test catalog", maxProducts)
	return store.Coupon{}, nil
}

// The message of a department coupon lists the department's first
// PREDICTION_MAX_PRODUCTS products, in the coupon's order, whatever the
// source; and the source is asked for those only, so a Redis cache holds
// (and reads back) no more than the message carries, not the department's
// hundreds.
func TestDepartmentCouponReadsOnlyWhatTheMessageCarries(t *testing.T) {
	cat := testCatalog(t)
	cfg := testConfig()
	ts := time.Now().Unix()
	coupon, all := departmentCouponToday(t, cat, ts, cfg.MaxProducts)
	rdb, _ := redisClient(t)
	const prefix = "focus-test:"
	sources := []struct {
		name string
		src  store.Source
	}{
		{"catalog", cat},
		{"memory cache", cache.NewMemory(cat, cache.Config{}, nil)},
		{"redis cache", cache.NewRedis(cat, rdb, cache.Config{Prefix: prefix}, nil, nil)},
	}
	for i, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			p := newTestPipeline(t, cfg, Parts{Source: s.src, Scorer: couponScorer{coupon.ID}, Sub: newBus(), Pub: newBus()})
			for round := range 2 { // a miss, then a hit for the caches
				id := cat.Customers()[2*i+round].ID
				want, err := event.NewPrediction(id, ts, coupon, all[:cfg.MaxProducts]).Marshal()
				if err != nil {
					t.Fatal(err)
				}
				res, err := p.FocusNow(context.Background(), fmt.Appendf(nil, `{"id":%q,"ts":%d,"dep":%q}`, id, ts, coupon.Department))
				if err != nil || res.Outcome != OutcomePublished {
					t.Fatalf("round %d: focus: %s, %v", round, res.Outcome, err)
				}
				if !bytes.Equal(res.Prediction, want) {
					t.Errorf("round %d: message\n got %s\nwant %s", round, res.Prediction, want)
				}
			}
		})
	}
	keys, err := rdb.Keys(context.Background(), prefix+"products:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("products keys in Redis: %v, %v; want the coupon's", keys, err)
	}
	for _, k := range keys {
		b, err := rdb.Get(context.Background(), k).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var rows []json.RawMessage
		if err := json.Unmarshal(b, &rows); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if len(rows) > cfg.MaxProducts {
			t.Errorf("%s holds %d products (%d bytes) of coupon %d; the message lists %d", k, len(rows), len(b), coupon.ID, cfg.MaxProducts)
		}
	}
}
