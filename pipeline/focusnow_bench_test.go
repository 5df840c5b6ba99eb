package pipeline

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// One focus through the focus stages in the caller's goroutine (FocusNow),
// in-process state: the single-instance path.
func BenchmarkFocusNowMemory(b *testing.B) {
	benchmarkFocusNow(b, Parts{})
}

func benchmarkFocusNow(b *testing.B, parts Parts) {
	b.Helper()
	cat := testCatalog(b)
	bus := newBus()
	parts.Source, parts.Scorer, parts.Sub, parts.Pub = cat, discountScorer{}, bus, bus
	cfg := testConfig()
	if parts.Redis != nil {
		cfg.DwellState = DwellStateRedis
	}
	p := newTestPipeline(b, cfg, parts)
	ts := time.Now().Unix()
	dep := departmentWithCoupons(b, cat, ts, 1)
	customers := cat.Customers()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// A new shopper for each focus, so that every focus gets a coupon.
		id := customers[i%len(customers)].ID
		res, err := p.FocusNow(ctx, fmt.Appendf(nil, `{"id":%q,"ts":%d,"dep":%q}`, id, ts+int64(i), dep))
		if err != nil || (res.Outcome != OutcomePublished && res.Outcome != OutcomeAlreadyIssued) {
			b.Fatalf("focus %d: %s, %v", i, res.Outcome, err)
		}
		for len(bus.out) > 0 {
			<-bus.out
		}
	}
}
