package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/recommender/train"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// A shop's own data (DATA_DIR) and a model trained on it offline
// (MODEL_FILE): the process serves that catalog, scores with that model, and
// a lingering customer of that data gets one of its coupons.
func TestDataDirAndModelFile(t *testing.T) {
	w := smallWorld(t)
	dir := t.TempDir()
	if err := csvdir.Write(dir, &csvdir.Tables{Catalog: w.Catalog, Preferences: w.Preferences(), History: w.History}); err != nil {
		t.Fatal(err)
	}
	// Fewer trees than training at startup would grow: scores equal to
	// this model's prove the file was loaded, not a model retrained.
	m, _, err := train.World(w, train.Options{MaxTrees: 10}, false)
	if err != nil {
		t.Fatal(err)
	}
	modelPath := filepath.Join(t.TempDir(), "model.json")
	if err := m.Save(modelPath); err != nil {
		t.Fatal(err)
	}

	sys := startSystem(t, map[string]string{"DATA_DIR": dir, "MODEL_FILE": modelPath})
	cat := sys.app.Catalog()
	if !slices.Equal(cat.Customers(), w.Catalog.Customers()) || !slices.Equal(cat.Coupons(), w.Catalog.Coupons()) {
		t.Fatal("the app's catalog is not the one in DATA_DIR")
	}
	if cust, _, _, _ := cat.Sizes(); cust != 300 {
		t.Fatalf("catalog of %d customers, want the 300 of DATA_DIR", cust)
	}

	ctx := context.Background()
	now := time.Now().Unix()
	id := customerWithCoupon(t, sys, store.Boys, now)
	c, _ := cat.Customer(ctx, id)
	coupons, _ := cat.ValidCoupons(ctx, store.Boys, store.DayOf(now), nil)
	got, want := make([]float64, len(coupons)), make([]float64, len(coupons))
	if err := sys.app.Scorer().Score(ctx, &c, coupons, got); err != nil {
		t.Fatal(err)
	}
	if err := m.Score(ctx, &c, coupons, want); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the app scores %v, MODEL_FILE's model %v", got, want)
	}

	obs, sensor := sys.observerAndSensor(t, "customer/prediction")
	s := &script{cl: sensor, id: id, ts: now}
	s.lingerInBoys()
	o := obs.nextOffer(t, 10*time.Second)
	if o.Customer.ID != id || o.Coupon.Department != "Boys" {
		t.Fatalf("prediction for %s in %s, want %s in Boys", o.Customer.ID, o.Coupon.Department, id)
	}
	row, ok := couponRows(t, dir)[o.Coupon.ID]
	if !ok {
		t.Fatalf("coupon %d is not in DATA_DIR's coupon_info.csv", o.Coupon.ID)
	}
	if row[2] != "Boys" || row[5] != o.Coupon.StartDate || row[6] != o.Coupon.EndDate {
		t.Errorf("published coupon %d in %s %s..%s, coupon_info.csv has %v",
			o.Coupon.ID, o.Coupon.Department, o.Coupon.StartDate, o.Coupon.EndDate, row)
	}
}

// A DATA_DIR the process cannot serve from stops it in app.New, with an
// error that says where to look.
func TestDataDirRefused(t *testing.T) {
	w := smallWorld(t)
	cases := []struct {
		name  string
		world *world.World
		edit  func(t *testing.T, dir string) // breaks the written tables
		want  []string                       // in the error
	}{
		{
			name:  "not a number in coupon_info.csv",
			world: w,
			edit:  func(t *testing.T, dir string) { setField(t, filepath.Join(dir, "coupon_info.csv"), 3, 4, "lots") },
			want:  []string{"DATA_DIR", "coupon_info.csv:3:4", `discount "lots"`},
		},
		{
			name:  "bare quote in coupon_info.csv",
			world: w,
			edit:  func(t *testing.T, dir string) { setField(t, filepath.Join(dir, "coupon_info.csv"), 5, 2, `buy"all`) },
			want:  []string{"DATA_DIR", "coupon_info.csv:5:2"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := csvdir.Write(dir, &csvdir.Tables{Catalog: tc.world.Catalog, Preferences: tc.world.Preferences(), History: tc.world.History}); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			err := newAppError(t, map[string]string{"DATA_DIR": dir})
			if err == nil {
				t.Fatal("app.New accepted the directory")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("app.New error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// The original demo's data (testdata/original/data: the four tables, no history,
// coupons running 2010 to 2013) with its store plan and nothing else set: the
// simulated shoppers are the data's customers and get the data's coupons,
// moved to run around today, each valid on the day it is offered. Before,
// without MODEL_FILE the start failed ("has no coupon_history.csv to train
// on"), and with one every focus found no coupon valid today.
func TestOriginalDataIssuesCoupons(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "original", "data"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := csvdir.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, model string }{
		{"model trained at start", ""},
		{"MODEL_FILE", modeltest.File(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := startSystem(t, map[string]string{
				"DATA_DIR":                   dir,
				"STORE_PLAN":                 "original",
				"MODEL_FILE":                 tc.model,
				"SIMULATOR_ENABLED":          "true",
				"SIMULATOR_SPEED":            "200",
				"SIMULATOR_SEED":             "7",
				"CUSTOMERS_AVERAGE_IN_STORE": "20",
			})
			if !slices.Equal(sys.app.Catalog().Customers(), orig.Catalog.Customers()) {
				t.Fatal("the app's customers are not those of testdata/original/data")
			}
			customers := map[string]bool{}
			for _, c := range orig.Catalog.Customers() {
				customers[c.ID] = true
			}

			entries := dial(t, sys.app.BrokerAddr(), "entries", "customer/enter")
			obs := dial(t, sys.app.BrokerAddr(), "observer", "customer/prediction")
			for range 20 {
				var e struct{ ID string }
				if err := json.Unmarshal(entries.next("customer/enter", 30*time.Second).Payload, &e); err != nil {
					t.Fatal(err)
				}
				if !customers[e.ID] {
					t.Fatalf("simulated shopper %q is not a customer of testdata/original/data", e.ID)
				}
			}
			entries.c.Disconnect(0)

			shoppers := map[string]bool{}
			shift := store.Day(0)
			ctx := context.Background()
			deadline := time.Now().Add(60 * time.Second)
			for len(shoppers) < 3 {
				o := obs.nextOffer(t, time.Until(deadline))
				if !customers[o.Customer.ID] {
					t.Fatalf("coupon for %q, not a customer of testdata/original/data: %s", o.Customer.ID, o.raw)
				}
				shoppers[o.Customer.ID] = true
				c, err := orig.Catalog.Coupon(ctx, o.Coupon.ID)
				if err != nil {
					t.Fatalf("coupon %d is not in testdata/original/data: %s", o.Coupon.ID, o.raw)
				}
				start, err1 := store.ParseDay(o.Coupon.StartDate)
				end, err2 := store.ParseDay(o.Coupon.EndDate)
				if err1 != nil || err2 != nil || o.Coupon.Department != c.Department.String() {
					t.Fatalf("coupon %d published as %s; testdata/original/data: %+v", c.ID, o.raw, c)
				}
				if shift == 0 {
					shift = start - c.Start
				}
				if start != c.Start+shift || end != c.End+shift {
					t.Errorf("coupon %d published for %s..%s, in the data %s..%s: not moved by the %d days of the others",
						c.ID, start, end, c.Start, c.End, shift)
				}
				if day := store.DayOf(o.TS); !(start <= day && day <= end) {
					t.Errorf("coupon %d (%s..%s) offered on %s", c.ID, start, end, day)
				}
				var p struct {
					Coupon struct{ Products []struct{ ID int } }
				}
				if err := json.Unmarshal(o.raw, &p); err != nil {
					t.Fatal(err)
				}
				products, _ := orig.Catalog.CouponProducts(ctx, c.ID, store.AllProducts)
				for _, pp := range p.Coupon.Products {
					if !slices.ContainsFunc(products, func(q store.Product) bool { return q.ID == pp.ID }) {
						t.Errorf("coupon %d lists product %d, which testdata/original/data does not link to it", c.ID, pp.ID)
					}
				}
			}
		})
	}
}

// smallWorld is a generated shop of 300 customers whose coupons run today.
func smallWorld(t *testing.T) *world.World {
	t.Helper()
	w, err := world.Generate(world.Config{Seed: 42, Reference: time.Now(), Customers: 300})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// couponRows reads a coupon_info.csv by coupon id.
func couponRows(t *testing.T, dir string) map[int][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "coupon_info.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	rows := map[int][]string{}
	for _, rec := range recs[1:] {
		id, err := strconv.Atoi(rec[0])
		if err != nil {
			t.Fatalf("coupon_info.csv: coupon_id %q", rec[0])
		}
		rows[id] = rec
	}
	return rows
}

// setField rewrites field col (1-based) of line (1-based, the header is
// line 1) of a CSV file whose fields hold no commas or quotes.
func setField(t *testing.T, path string, line, col int, value string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	fields := strings.Split(lines[line-1], ",")
	fields[col-1] = value
	lines[line-1] = strings.Join(fields, ",")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newAppError builds the app as startSystem does and returns app.New's
// error. An app that was built after all is run down at once, so nothing it
// bound outlives the test.
func newAppError(t *testing.T, extra map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := newApp(ctx, t, extra)
	if err == nil {
		cancel()
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("app did not stop within 10s")
		}
	}
	return err
}
