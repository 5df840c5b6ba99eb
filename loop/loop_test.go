package loop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/experiment"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/redistest"

	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

const (
	focusTopic      = "customer/focus"
	predictionTopic = "customer/prediction"
	redeemTopic     = "customer/redeem"
)

// t0 is the event time the tests start at: 2026-03-02T10:00:00Z.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC).Unix()

type rig struct {
	loop *Loop
	br   *broker.Embedded
	reg  *prometheus.Registry
	srv  *httptest.Server
	path string
	stop func(time.Duration)
}

type rigOpts struct {
	cfg   Config
	exp   experiment.Config
	path  string // history file; "" a new one in a temporary directory
	redis redis.UniversalClient
	noPub bool // POST /redeem handled in process, as without a broker
}

func defaultConfig() Config {
	return Config{RedeemTopic: redeemTopic, Window: time.Hour, MaxOpenOffers: 1000}
}

// newRig runs a loop on a real embedded broker, its endpoints served over HTTP.
func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if o.cfg == (Config{}) {
		o.cfg = defaultConfig()
	}
	if o.exp.Salt == "" {
		o.exp.Salt = "storeflow"
	}
	if o.path == "" {
		o.path = filepath.Join(t.TempDir(), "coupon_history.csv")
	}
	log := slog.New(slog.DiscardHandler)
	br, err := broker.NewEmbedded(broker.Config{ListenAddr: "127.0.0.1:0", Name: "test"}, log, broker.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stopBroker := harness.Start(t, "embedded broker", br.Run, br.Ready())
	t.Cleanup(func() { stopBroker(5 * time.Second) })
	reg := prometheus.NewRegistry()
	p := Parts{Experiment: o.exp, FocusTopic: focusTopic, PredictionTopic: predictionTopic, HistoryPath: o.path,
		Redis: o.redis, RedisPrefix: "test:", Pub: br, Log: log, Registerer: reg}
	if o.noPub {
		p.Pub = nil
	}
	l, err := New(o.cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Subscribe(br); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	close(ready)
	stop := harness.Start(t, "loop", l.Run, ready)
	mux := http.NewServeMux()
	l.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &rig{loop: l, br: br, reg: reg, srv: srv, path: o.path, stop: stop}
}

func (r *rig) pub(t *testing.T, topic, payload string) {
	t.Helper()
	if err := r.br.Publish(context.Background(), topic, []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) offer(t *testing.T, customer string, coupon int, ts int64) {
	t.Helper()
	r.pub(t, predictionTopic, fmt.Sprintf(`{"customer":{"id":%q},"coupon":{"id":%d,"type":"just_discount","products":[]},"ts":%d}`, customer, coupon, ts))
}

func (r *rig) redeem(t *testing.T, customer string, coupon int, ts int64) {
	t.Helper()
	r.pub(t, redeemTopic, string(event.AppendRedemption(nil, event.Redemption{ID: customer, TS: ts, CouponID: coupon})))
}

// waitCount waits until the counter reaches want, and fails if it goes past.
func waitCount(t *testing.T, c prometheus.Collector, want float64, what string) {
	t.Helper()
	harness.Until(t, 5*time.Second, fmt.Sprintf("%s = %v", what, want), func() bool { return testutil.ToFloat64(c) >= want })
	if got := testutil.ToFloat64(c); got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// rows waits until the history file holds n rows after its header (the
// loop fsyncs every second) and returns them.
func rows(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	harness.Until(t, 5*time.Second, fmt.Sprintf("%d rows in %s", n, path), func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(lines) >= n+1
	})
	if lines[0] != "customer_id,coupon_id,date,used" {
		t.Fatalf("header %q", lines[0])
	}
	if len(lines) != n+1 {
		t.Fatalf("%d rows, want %d: %q", len(lines)-1, n, lines[1:])
	}
	return lines[1:]
}

func TestRedeemedWithinWindow(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.offer(t, "11", 7, t0)
	r.offer(t, "12", 8, t0+1)
	r.redeem(t, "11", 7, t0+59*60) // within the hour
	waitCount(t, r.loop.m.settled.WithLabelValues(outcomeUsed), 1, "offers settled used")
	waitCount(t, r.loop.m.matched.WithLabelValues(redeemMatched), 1, "redemptions matched")
	if got := rows(t, r.path, 1); got[0] != "11,7,2026-03-02,1" {
		t.Errorf("row %q, want 11,7,2026-03-02,1", got[0])
	}
	// The other offer is still waiting: one open offer.
	if got := testutil.ToFloat64(r.loop.m.settled.WithLabelValues(outcomeExpired)); got != 0 {
		t.Errorf("%v offers expired, want 0", got)
	}
}

func TestPastWindowNotUsed(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.offer(t, "11", 7, t0)
	// An offer an hour and a second later moves the event clock past the
	// first one's window.
	r.offer(t, "12", 8, t0+3601)
	waitCount(t, r.loop.m.settled.WithLabelValues(outcomeExpired), 1, "offers settled expired")
	r.redeem(t, "11", 7, t0+3602) // too late: its offer is settled
	waitCount(t, r.loop.m.matched.WithLabelValues(redeemUnmatched), 1, "redemptions unmatched")
	if got := rows(t, r.path, 1); got[0] != "11,7,2026-03-02,0" {
		t.Errorf("row %q, want 11,7,2026-03-02,0", got[0])
	}
	if got := testutil.ToFloat64(r.loop.m.settled.WithLabelValues(outcomeUsed)); got != 0 {
		t.Errorf("%v offers used, want 0", got)
	}
}

// A redemption later than the window, before any offer moved the clock,
// does not count either.
func TestLateRedemptionBeforeClockMoves(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.offer(t, "11", 7, t0)
	r.redeem(t, "11", 7, t0+3601)
	waitCount(t, r.loop.m.matched.WithLabelValues(redeemUnmatched), 1, "redemptions unmatched")
	if got := rows(t, r.path, 1); got[0] != "11,7,2026-03-02,0" {
		t.Errorf("row %q, want used 0", got[0])
	}
}

func TestUnmatchedAndRejected(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.offer(t, "11", 7, t0)
	r.redeem(t, "11", 8, t0+1) // another coupon
	r.redeem(t, "12", 7, t0+1) // another shopper
	waitCount(t, r.loop.m.matched.WithLabelValues(redeemUnmatched), 2, "redemptions unmatched")
	for _, tc := range []struct{ payload, reason string }{
		{`not json`, "malformed_json"},
		{`{"id":"11","ts":1}`, "missing_field"},
		{`{"id":"11","ts":1,"coupon_id":0}`, "invalid_field"},
		{`{"id":"11","ts":1,"coupon_id":7,"coupon_id":7}`, "invalid_field"},
		{`{"id":"11","ts":1,"coupon_id":7,"pad":"` + strings.Repeat("x", event.MaxPayload) + `"}`, "too_large"},
	} {
		r.pub(t, redeemTopic, tc.payload)
	}
	waitCount(t, r.loop.m.rejected.WithLabelValues(sourceTopic, "invalid_field"), 2, "rejected invalid_field")
	for reason, want := range map[string]float64{"malformed_json": 1, "missing_field": 1, "too_large": 1} {
		waitCount(t, r.loop.m.rejected.WithLabelValues(sourceTopic, reason), want, "rejected "+reason)
	}
	if got := testutil.ToFloat64(r.loop.m.redemptions.WithLabelValues("a")); got != 2 {
		t.Errorf("valid redemptions counted %v, want 2", got)
	}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPostRedeem(t *testing.T) {
	for _, noPub := range []bool{false, true} {
		t.Run(fmt.Sprintf("published %v", !noPub), func(t *testing.T) {
			r := newRig(t, rigOpts{noPub: noPub})
			r.offer(t, "11", 7, t0)
			code, body := post(t, r.srv.URL+"/redeem", `{"id":11,"ts":1772445600,"coupon_id":7}`)
			if code != http.StatusAccepted {
				t.Fatalf("POST /redeem: %d %s", code, body)
			}
			waitCount(t, r.loop.m.settled.WithLabelValues(outcomeUsed), 1, "offers settled used")
			if got := rows(t, r.path, 1); got[0] != "11,7,2026-03-02,1" {
				t.Errorf("row %q", got[0])
			}
			for _, tc := range []struct {
				body, reason, field string
				code                int
			}{
				{`{"id":"11","ts":1772445600}`, "missing_field", "coupon_id", 400},
				{`{"id":"","ts":1772445600,"coupon_id":7}`, "invalid_field", "id", 400},
				{`[1]`, "malformed_json", "", 400},
				{`{"id":"11","ts":1772445600,"coupon_id":7,"pad":"` + strings.Repeat("x", event.MaxPayload) + `"}`, "too_large", "", 413},
			} {
				code, body := post(t, r.srv.URL+"/redeem", tc.body)
				if code != tc.code || !strings.Contains(body, `"reason":"`+tc.reason+`"`) || (tc.field != "" && !strings.Contains(body, `"field":"`+tc.field+`"`)) {
					t.Errorf("POST /redeem %.40s: %d %s, want %d naming reason %s and field %q", tc.body, code, body, tc.code, tc.reason, tc.field)
				}
			}
			if got := testutil.ToFloat64(r.loop.m.rejected.WithLabelValues(sourceHTTP, "too_large")); got != 1 {
				t.Errorf("rejected too_large over http: %v, want 1", got)
			}
			if got := testutil.ToFloat64(r.loop.m.rejected.WithLabelValues(sourceHTTP, "invalid_field")); got != 1 {
				t.Errorf("rejected invalid_field over http: %v, want 1", got)
			}
		})
	}
}

func TestOpenOffersBounded(t *testing.T) {
	cfg := defaultConfig()
	cfg.MaxOpenOffers = 2
	r := newRig(t, rigOpts{cfg: cfg})
	r.offer(t, "1", 7, t0)
	r.offer(t, "2", 7, t0+1)
	r.offer(t, "3", 7, t0+2)
	waitCount(t, r.loop.m.settled.WithLabelValues(outcomeEvicted), 1, "offers evicted")
	if got := rows(t, r.path, 1); got[0] != "1,7,2026-03-02,0" {
		t.Errorf("row %q: want the oldest offer, not used", got[0])
	}
	r.redeem(t, "2", 7, t0+3)
	waitCount(t, r.loop.m.settled.WithLabelValues(outcomeUsed), 1, "offers used")
}

// The history survives a restart: rows from before it are still there, the
// header is written once, and csvdir loads the directory with it.
func TestHistoryAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cat, err := world.GenerateCatalog(world.Config{Seed: 3, Customers: 20, Products: 30, Coupons: 10, Reference: time.Unix(t0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := csvdir.Write(dir, &csvdir.Tables{Catalog: cat}); err != nil {
		t.Fatal(err)
	}
	cust, coup := cat.Customers(), cat.Coupons()
	path := filepath.Join(dir, "coupon_history.csv")

	r := newRig(t, rigOpts{path: path})
	r.offer(t, cust[0].ID, coup[0].ID, t0)
	r.redeem(t, cust[0].ID, coup[0].ID, t0+5)
	waitCount(t, r.loop.m.rows, 1, "rows")
	r.stop(5 * time.Second) // syncs and closes the file

	r = newRig(t, rigOpts{path: path})
	r.offer(t, cust[1].ID, coup[1].ID, t0+10)
	r.offer(t, cust[2].ID, coup[2].ID, t0+10+3600)
	waitCount(t, r.loop.m.rows, 1, "rows after the restart")
	got := rows(t, path, 2)
	want := []string{fmt.Sprintf("%s,%d,2026-03-02,1", cust[0].ID, coup[0].ID), fmt.Sprintf("%s,%d,2026-03-02,0", cust[1].ID, coup[1].ID)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("rows %q, want %q", got, want)
	}
	tables, err := csvdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables.History) != 2 || !tables.History[0].Used || tables.History[1].Used {
		t.Errorf("csvdir loads the history as %+v", tables.History)
	}
}

// Two instances sharing Redis: an offer seen by one, a redemption by the
// other (POST /redeem on it, published on its own broker) matches it; a
// redemption both see counts once.
func TestTwoInstancesShareOffers(t *testing.T) {
	srv := redistest.Start(t)
	client := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	one := newRig(t, rigOpts{redis: client()})
	two := newRig(t, rigOpts{redis: client()})
	one.offer(t, "11", 7, t0)
	harness.Until(t, 5*time.Second, "the offer in Redis", func() bool {
		n, _ := one.loop.ledger.size(context.Background())
		return n == 1
	})
	code, body := post(t, two.srv.URL+"/redeem", `{"id":"11","ts":1772445660,"coupon_id":7}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST /redeem on the second instance: %d %s", code, body)
	}
	waitCount(t, two.loop.m.settled.WithLabelValues(outcomeUsed), 1, "offers used on the second instance")
	if got := rows(t, two.path, 1); got[0] != "11,7,2026-03-02,1" {
		t.Errorf("row %q", got[0])
	}
	rdb := client()
	list, err := rdb.LRange(context.Background(), "test:{loop}:history", 0, -1).Result()
	if err != nil || len(list) != 1 || list[0] != "11,7,2026-03-02,1" {
		t.Errorf("history in Redis: %q, %v", list, err)
	}

	// Both instances see the same offer and the same redemption (one
	// broker's messages copied to the other's): one match, no unmatched.
	for _, r := range []*rig{one, two} {
		r.offer(t, "12", 8, t0+100)
	}
	harness.Until(t, 5*time.Second, "the second offer in Redis", func() bool {
		n, _ := one.loop.ledger.size(context.Background())
		return n == 1
	})
	for _, r := range []*rig{one, two} {
		r.redeem(t, "12", 8, t0+200)
	}
	harness.Until(t, 5*time.Second, "the redemption matched", func() bool {
		return testutil.ToFloat64(one.loop.m.settled.WithLabelValues(outcomeUsed))+testutil.ToFloat64(two.loop.m.settled.WithLabelValues(outcomeUsed)) == 2
	})
	// The redemption both instances saw was handled once: let a later
	// redemption on each pass through behind it, then count.
	for _, r := range []*rig{one, two} {
		r.redeem(t, "99", 1, t0+300)
	}
	harness.Until(t, 5*time.Second, "the marker redemptions", func() bool {
		return testutil.ToFloat64(one.loop.m.matched.WithLabelValues(redeemUnmatched))+testutil.ToFloat64(two.loop.m.matched.WithLabelValues(redeemUnmatched)) >= 1
	})
	if u := testutil.ToFloat64(one.loop.m.matched.WithLabelValues(redeemUnmatched)) + testutil.ToFloat64(two.loop.m.matched.WithLabelValues(redeemUnmatched)); u != 1 {
		t.Errorf("%v unmatched redemptions, want 1 (the one both saw of no offer, counted once)", u)
	}
	if m := testutil.ToFloat64(one.loop.m.matched.WithLabelValues(redeemMatched)) + testutil.ToFloat64(two.loop.m.matched.WithLabelValues(redeemMatched)); m != 2 {
		t.Errorf("%v matched redemptions, want 2", m)
	}
	rep := one.loop.Report(context.Background())
	if rep.Arms[1].Arm != experiment.A || rep.Arms[1].OffersUsed != 2 {
		t.Errorf("report of the first instance: %+v, want 2 offers used in arm a (both instances')", rep.Arms)
	}
}

func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		k, n      int64
		low, high float64
	}{
		// Reference values of the 95 % Wilson score interval.
		{5, 10, 0.2366, 0.7634},
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
		{1, 100, 0.0018, 0.0545},
		{50, 1000, 0.0381, 0.0653},
		{0, 0, 0, 0},
	} {
		got := Wilson(tc.k, tc.n)
		if d := got.Low - tc.low; d > 5e-5 || d < -5e-5 {
			t.Errorf("Wilson(%d, %d).Low = %.5f, want %.4f", tc.k, tc.n, got.Low, tc.low)
		}
		if d := got.High - tc.high; d > 5e-5 || d < -5e-5 {
			t.Errorf("Wilson(%d, %d).High = %.5f, want %.4f", tc.k, tc.n, got.High, tc.high)
		}
		if tc.n > 0 && got.Value != float64(tc.k)/float64(tc.n) {
			t.Errorf("Wilson(%d, %d).Value = %v", tc.k, tc.n, got.Value)
		}
	}
}

// Each arm counts its own shoppers' focus events, coupons and redemptions,
// and /api/experiment reports them with the settings.
func TestAccountingPerArm(t *testing.T) {
	exp := experiment.Config{HoldoutFraction: 0.3, ModelBFile: "random", ModelBFraction: 0.3, Salt: "s1"}
	r := newRig(t, rigOpts{exp: exp})
	want := map[experiment.Arm]*ArmReport{}
	for _, a := range experiment.Arms {
		want[a] = &ArmReport{Arm: a}
	}
	for i := range 60 {
		id := fmt.Sprint(100 + i)
		a := exp.Assign(id)
		w := want[a]
		r.pub(t, focusTopic, fmt.Sprintf(`{"id":%q,"ts":%d,"dep":"Men"}`, id, t0+int64(i)))
		w.Focus++
		if a == experiment.Holdout {
			if i%4 == 0 { // a holdout shopper redeems a coupon from elsewhere
				r.redeem(t, id, 3, t0+int64(i))
				w.Redemptions++
			}
			continue
		}
		r.offer(t, id, 5, t0+int64(i))
		w.Coupons++
		if i%3 == 0 {
			r.redeem(t, id, 5, t0+int64(i)+30)
			w.Redemptions++
			w.OffersUsed++
		}
	}
	if want[experiment.Holdout].Focus == 0 || want[experiment.B].Focus == 0 || want[experiment.A].Focus == 0 {
		t.Fatalf("the shoppers do not fall in every arm: %+v", want)
	}
	total := float64(want[experiment.A].OffersUsed + want[experiment.B].OffersUsed)
	harness.Until(t, 5*time.Second, "every redemption handled", func() bool {
		return testutil.ToFloat64(r.loop.m.settled.WithLabelValues(outcomeUsed)) == total &&
			testutil.ToFloat64(r.loop.m.matched.WithLabelValues(redeemUnmatched)) == float64(want[experiment.Holdout].Redemptions)
	})
	resp, err := http.Get(r.srv.URL + "/api/experiment")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var rep Report
	if err := jsonUnmarshal(b, &rep); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if rep.Settings != (Settings{HoldoutFraction: 0.3, ModelBFile: "random", ModelBFraction: 0.3, Salt: "s1"}) || rep.WindowSeconds != 3600 {
		t.Errorf("settings %+v, window %d", rep.Settings, rep.WindowSeconds)
	}
	for _, got := range rep.Arms {
		w := want[got.Arm]
		w.Rate, w.PerFocus = Wilson(w.OffersUsed, w.Coupons), Wilson(w.Redemptions, w.Focus)
		if got != *w {
			t.Errorf("arm %s: %+v, want %+v", got.Arm, got, *w)
		}
		for _, m := range []struct {
			c    *prometheus.CounterVec
			want int64
		}{{r.loop.m.focus, w.Focus}, {r.loop.m.coupons, w.Coupons}, {r.loop.m.redemptions, w.Redemptions}} {
			if v := testutil.ToFloat64(m.c.WithLabelValues(string(got.Arm))); v != float64(m.want) {
				t.Errorf("arm %s: metric %v, want %d", got.Arm, v, m.want)
			}
		}
	}
	if !bytes.Contains(b, []byte(`"redemption_rate":{"value"`)) {
		t.Errorf("answer %s", b)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
