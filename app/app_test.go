package app

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/recommender"
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
// race detector's cost stays small); with data that has no history it says
// what to do instead.
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
	if a.model == nil || a.scorer != recommender.Scorer(a.model) || len(a.model.Trees) == 0 {
		t.Fatal("no model trained at start")
	}
	if n, _, _, _ := a.catalog.Sizes(); n != 200 {
		t.Fatalf("catalog has %d customers, want the DATA_DIR's 200", n)
	}

	env["DATA_DIR"] = without
	if _, err := newApp(t, env); err == nil || !strings.Contains(err.Error(), "MODEL_FILE") {
		t.Fatalf("New without history or MODEL_FILE = %v, want an error pointing at MODEL_FILE", err)
	}
}
