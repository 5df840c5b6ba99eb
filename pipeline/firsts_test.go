package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
)

// startLogged runs a pipeline on b whose log goes to the returned buffer.
func startLogged(t *testing.T, cfg Config, threshold float64, b *bus) *proctest.SyncBuffer {
	t.Helper()
	buf := new(proctest.SyncBuffer)
	p := newTestPipeline(t, cfg, Parts{Source: testCatalog(t), Scorer: discountScorer{}, Threshold: threshold, Sub: b, Pub: b,
		Registerer: prometheus.NewRegistry()})
	p.log = slog.New(slog.NewTextHandler(buf, nil)) // INFO, as the demo logs
	runUntilEnd(t, p, nil)
	return buf
}

// The first focus and the first coupon are logged at INFO once each, so the
// demo shows it works before its first coupon.
func TestFirstFocusAndCouponAreLoggedOnce(t *testing.T) {
	b := newBus()
	log := startLogged(t, testConfig(), 0, b)
	coupons := 0
	publishFocus(b, 3)
	publishFocusFrom(b, 10, 3)
	waitFor(t, "six coupons", func() bool {
		coupons += countPrefix(b, "prediction ")
		return coupons == 6
	})
	for _, msg := range []string{`level=INFO msg="first focus" customer_id=`, `level=INFO msg="first coupon published" customer_id=`} {
		if n := strings.Count(log.String(), msg); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", msg, n, log)
		}
	}
}

// countPrefix takes what b published so far and counts the messages with prefix;
// b.out is drained, so each call counts only what came since the last.
func countPrefix(b *bus, prefix string) int {
	n := 0
	for {
		select {
		case m := <-b.out:
			if strings.HasPrefix(m, prefix) {
				n++
			}
		default:
			return n
		}
	}
}

// When FIRST_COUPON_WAIT passes after the first focus with no coupon, one
// WARN line says why, from the outcome counts.
func TestNoCouponYetSaysWhy(t *testing.T) {
	cfg := testConfig()
	cfg.FirstCouponWait = time.Second
	b := newBus()
	log := startLogged(t, cfg, 0.99, b) // the discount scorer gives at most 0.5: every coupon below
	publishFocus(b, 3)
	_ = b.Publish(context.Background(), "focus", fmt.Appendf(nil, `{"id":"no-such-customer","ts":%d,"dep":"Men"}`, time.Now().Unix()))
	var line string
	harness.Until(t, 10*time.Second, "no coupon yet logged", func() bool {
		for _, l := range strings.Split(log.String(), "\n") {
			if strings.Contains(l, `msg="no coupon yet"`) {
				line = l
				return true
			}
		}
		return false
	})
	t.Log(line)
	for _, want := range []string{"level=WARN", "after_first_focus=1s", "focus_events=4", "in_flight=0",
		"below_threshold=3", "unknown_customer=1", `why="the model scores every valid coupon below PREDICTION_THRESHOLD=0.99`} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if strings.Index(line, "below_threshold") > strings.Index(line, "unknown_customer") {
		t.Errorf("%q: want the most frequent outcome first", line)
	}
	if strings.Contains(log.String(), "first coupon published") {
		t.Errorf("a coupon logged with every coupon below the threshold:\n%s", log)
	}
}
