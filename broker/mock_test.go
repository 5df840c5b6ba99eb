package broker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
)

func TestMockLogsAndDeliversNothing(t *testing.T) {
	var logs bytes.Buffer
	m := NewMock(slog.New(slog.NewTextHandler(&logs, nil)))
	select {
	case <-m.Ready():
	default:
		t.Fatal("mock not ready at once")
	}
	if m.Addr() != "" {
		t.Errorf("Addr = %q, want none", m.Addr())
	}
	called := false
	if err := m.Subscribe("customer/#", func(string, []byte) { called = true }); err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "mock broker", m.Run, m.Ready())
	for range 3 {
		if err := m.Publish(context.Background(), "customer/enter", []byte(`{"id":"997","ts":192326400}`)); err != nil {
			t.Fatal(err)
		}
	}
	if called {
		t.Error("the mock delivered a message")
	}
	if m.Published() != 3 {
		t.Errorf("Published = %d, want 3", m.Published())
	}
	stop(5 * time.Second)
	// Read only now: Run logs too.
	if s := logs.String(); !strings.Contains(s, "msg=mock_publish") || !strings.Contains(s, "topic=customer/enter") || !strings.Contains(s, `192326400`) {
		t.Errorf("log %s, want topic and payload", s)
	}
	if err := m.Publish(context.Background(), "x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Run = %v, want ErrClosed", err)
	}
	if first, second := m.Close(), m.Close(); first != nil || second != nil {
		t.Error("Close is not idempotent")
	}
}
