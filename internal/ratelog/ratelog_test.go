package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestGateOnePerKeyAndInterval(t *testing.T) {
	g := NewGate(time.Hour)
	if n, ok := g.Allow("a"); !ok || n != 0 {
		t.Fatalf("first a: %d, %v; want 0, true", n, ok)
	}
	for range 3 {
		if _, ok := g.Allow("a"); ok {
			t.Fatal("a again within the interval was allowed")
		}
	}
	if _, ok := g.Allow("b"); !ok {
		t.Fatal("b held back by a")
	}
	g.keys["a"].next = time.Now().Add(-time.Second) // the interval has passed
	if n, ok := g.Allow("a"); !ok || n != 3 {
		t.Fatalf("a after the interval: %d, %v; want 3 held back, true", n, ok)
	}
}

func TestGateForgetsOldKeysAtTheBound(t *testing.T) {
	g := NewGate(time.Nanosecond)
	for i := range 2 * maxKeys {
		g.Allow(strings.Repeat("k", i%50) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(g.keys) > maxKeys+1 {
		t.Fatalf("%d keys remembered, want at most %d", len(g.keys), maxKeys+1)
	}
}

func TestLoggerSaysHowManyItHeldBack(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour)
	for range 5 {
		l.Log(slog.LevelWarn, "k", "bad payload", "reason", "x")
	}
	if n := strings.Count(buf.String(), "bad payload"); n != 1 {
		t.Fatalf("%d lines, want 1:\n%s", n, &buf)
	}
	l.gate.keys["k"].next = time.Now().Add(-time.Second)
	l.Log(slog.LevelWarn, "k", "bad payload", "reason", "x")
	if !strings.Contains(buf.String(), "suppressed=4") {
		t.Fatalf("second line lacks suppressed=4:\n%s", &buf)
	}
	l.Log(slog.LevelDebug, "d", "below the level") // not enabled: neither written nor counted
	if strings.Contains(buf.String(), "below the level") {
		t.Fatal("a line below the logger's level was written")
	}
}
