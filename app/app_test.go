package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// A part that cannot start makes New fail with the reason, and leaves nothing
// bound: the embedded broker's port is free again.
func TestNewFailureReleasesTheBroker(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	brokerAddr := proctest.FreeAddr(t)

	_, err = newApp(t, map[string]string{
		"BROKER_LISTEN_ADDR": brokerAddr,
		"HTTP_ADDR":          busy.Addr().String(),
		"SIMULATOR_ENABLED":  "false",
		"MODEL_FILE":         modeltest.File(t),
	})
	if err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Fatalf("New = %v, want an error naming HTTP_ADDR", err)
	}
	l, err := net.Listen("tcp", brokerAddr)
	if err != nil {
		t.Fatalf("the embedded broker still holds %s after New failed: %v", brokerAddr, err)
	}
	l.Close()
}

// A missing CUSTOMERS_LIST_FILE is an error only when it was set explicitly.
func TestCustomersListFile(t *testing.T) {
	base := map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "MODEL_FILE": modeltest.File(t)}
	t.Chdir(t.TempDir()) // no customers.csv here
	a, err := newApp(t, base)
	if err != nil {
		t.Fatalf("default customers.csv absent: %v", err)
	}
	_ = a.conn.Close()

	base["CUSTOMERS_LIST_FILE"] = "nope.csv"
	if _, err := newApp(t, base); err == nil || !strings.Contains(err.Error(), "nope.csv") {
		t.Fatalf("explicit missing file: %v, want an error naming it", err)
	}
}

// Without MODEL_FILE a storeflow trains its model at start on the data's
// history (the demo: on the generated history; here a small DATA_DIR, so the
// race detector's cost stays small); with data that has no history (the
// original demo's) it trains on the generated shop's history and says so.
func TestModelAtStart(t *testing.T) {
	w, err := world.Generate(world.Config{Seed: 1, Reference: time.Now(), Customers: 200, Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	withHistory, without := t.TempDir(), t.TempDir()
	if err := csvdir.Write(withHistory, &csvdir.Tables{Catalog: w.Catalog, Preferences: w.Preferences(), History: w.History}); err != nil {
		t.Fatal(err)
	}
	w.History = nil
	if err := csvdir.Write(without, &csvdir.Tables{Catalog: w.Catalog, Preferences: w.Preferences(), History: w.History}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "SIMULATOR_ENABLED": "false", "DATA_DIR": withHistory}
	a, err := newApp(t, env)
	if err != nil {
		t.Fatal(err)
	}
	_ = a.conn.Close()
	if a.model == nil || a.scorer != recommender.Scorer(a.model) || len(a.model.Current().Trees) == 0 {
		t.Fatal("no model trained at start")
	}
	if n, _, _, _ := a.catalog.Sizes(); n != 200 {
		t.Fatalf("catalog has %d customers, want the DATA_DIR's 200", n)
	}

	env["DATA_DIR"] = without
	env["CATALOG_SEED"] = "3"
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	a, err = New(context.Background(), cfg, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatalf("New without history or MODEL_FILE: %v", err)
	}
	_ = a.conn.Close()
	if a.model == nil || a.scorer != recommender.Scorer(a.model) || len(a.model.Current().Trees) == 0 {
		t.Fatal("no model trained at start")
	}
	if n, _, _, _ := a.catalog.Sizes(); n != 200 {
		t.Fatalf("catalog has %d customers, want the DATA_DIR's 200", n)
	}
	lines := logLines(&log, "model trained")
	if len(lines) != 1 || !strings.Contains(lines[0], "generated shop") || !strings.Contains(lines[0], "coupon_history.csv") ||
		!strings.Contains(lines[0], "seed=3") || !strings.Contains(lines[0], "offers=") {
		t.Errorf("log lines about the model: %q, want one saying it was trained on the generated shop's history (seed 3) for want of coupon_history.csv", lines)
	}
}

// COUPON_DATES at start: a catalog whose coupons all ended before today (the
// original demo's ran 2010 to 2013) is moved to cover today by default and
// says so; one whose coupons reach today is served as it is; with no coupon
// valid today a warning names the period the coupons cover and the setting.
func TestCouponDatesAtStart(t *testing.T) {
	now := time.Now()
	today := store.DayOf(now.Unix())
	catalogAround := func(t *testing.T, reference time.Time) string {
		t.Helper()
		w, err := world.Generate(world.Config{Seed: 1, Reference: reference, Customers: 50, Days: 1})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := csvdir.Write(dir, &csvdir.Tables{Catalog: w.Catalog}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	past, current, future := now.AddDate(-12, 0, 0), now, now.AddDate(5, 0, 0)
	tests := []struct {
		name      string
		reference time.Time
		mode      string // "" leaves the default
		shifted   bool
		warn      bool
	}{
		{"past, default", past, "", true, false},
		{"past, keep", past, "keep", false, true},
		{"current, default", current, "", false, false},
		{"current, keep", current, "keep", false, false},
		{"future, default", future, "", false, true},
		{"future, shift", future, "shift", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := catalogAround(t, tc.reference)
			tables, err := csvdir.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			first, last, _ := tables.Catalog.CouponPeriod()
			env := map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "SIMULATOR_ENABLED": "false",
				"DATA_DIR": dir, "MODEL_FILE": modeltest.File(t)}
			if tc.mode != "" {
				env["COUPON_DATES"] = tc.mode
			}
			cfg, err := config.Load(env)
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			a, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(&log, nil)))
			if err != nil {
				t.Fatal(err)
			}
			_ = a.conn.Close()

			gotFirst, gotLast, _ := a.catalog.CouponPeriod()
			days := gotFirst - first
			if gotLast-gotFirst != last-first {
				t.Fatalf("coupons cover %s..%s, the data %s..%s: not the same length", gotFirst, gotLast, first, last)
			}
			if (days != 0) != tc.shifted {
				t.Fatalf("coupons cover %s..%s, the data %s..%s: shifted %v, want %v", gotFirst, gotLast, first, last, days != 0, tc.shifted)
			}
			for i, cp := range a.catalog.Coupons() {
				was := tables.Catalog.Coupons()[i]
				if cp.ID != was.ID || cp.Start != was.Start+days || cp.End != was.End+days {
					t.Fatalf("coupon %d runs %s..%s, in the data %s..%s: not moved by %d days", cp.ID, cp.Start, cp.End, was.Start, was.End, days)
				}
			}
			valid := 0
			for _, cp := range a.catalog.Coupons() {
				if cp.ValidOn(today) {
					valid++
				}
			}
			if tc.warn == (valid > 0) {
				t.Errorf("%d coupons valid today, want warn=%v", valid, tc.warn)
			}
			if !strings.Contains(log.String(), fmt.Sprintf("coupons_valid_today=%d", valid)) {
				t.Errorf("the catalog ready line does not say coupons_valid_today=%d:\n%s", valid, log.String())
			}
			if lines := logLines(&log, "coupon dates shifted"); (len(lines) == 1) != tc.shifted ||
				tc.shifted && !strings.Contains(lines[0], "data_from="+first.String()) {
				t.Errorf("log lines about the shift: %q, want shifted=%v (from %s)", lines, tc.shifted, first)
			}
			warns := logLines(&log, "level=WARN")
			if !tc.warn {
				if len(warns) != 0 {
					t.Errorf("warnings %q, want none", warns)
				}
				return
			}
			if len(warns) != 1 {
				t.Fatalf("warnings %q, want one", warns)
			}
			for _, s := range []string{"no coupon is valid today", "coupons_from=" + first.String(), "coupons_to=" + last.String(), "COUPON_DATES=shift"} {
				if !strings.Contains(warns[0], s) {
					t.Errorf("warning %q does not say %q", warns[0], s)
				}
			}
		})
	}
}

// logLines returns the lines of log that contain s.
func logLines(log *bytes.Buffer, s string) []string {
	var out []string
	for line := range strings.Lines(log.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}
