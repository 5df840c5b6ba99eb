package app

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/storeflow/storeflow/config"
)

// A part that cannot start makes New fail with the reason, and leaves nothing
// bound: the embedded broker's port is free again.
func TestNewFailureReleasesTheBroker(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr := free.Addr().String()
	free.Close()

	cfg, err := config.Load(map[string]string{
		"BROKER_LISTEN_ADDR": brokerAddr,
		"HTTP_ADDR":          busy.Addr().String(),
		"SIMULATOR_ENABLED":  "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), cfg, slog.New(slog.DiscardHandler))
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
	base := map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off"}
	t.Chdir(t.TempDir()) // no customers.csv here
	cfg, err := config.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("default customers.csv absent: %v", err)
	}
	_ = a.conn.Close()

	base["CUSTOMERS_LIST_FILE"] = "nope.csv"
	cfg, err = config.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "nope.csv") {
		t.Fatalf("explicit missing file: %v, want an error naming it", err)
	}
}
