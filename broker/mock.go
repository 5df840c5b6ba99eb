package broker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Mock is the broker surface with no network, for TESTING_NO_MQTT and
// TESTING_MOCK_MQTT (the seeds' "testing without MQTT"): a publish is logged
// and counted, never delivered, so nothing outside the process is needed and
// nothing listens.
type Mock struct {
	log       *slog.Logger
	ready     chan struct{}
	closed    atomic.Bool
	published atomic.Uint64

	mu   sync.Mutex
	subs []string // filters subscribed, for the log and for tests
}

// NewMock returns a mock broker; it is ready at once.
func NewMock(log *slog.Logger) *Mock {
	m := &Mock{log: log, ready: make(chan struct{})}
	close(m.ready)
	return m
}

// Publish logs topic and payload at info and returns; it never blocks and
// delivers nothing, not even to this process's own subscribers.
func (m *Mock) Publish(_ context.Context, topic string, payload []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.published.Add(1)
	m.log.Info("mock_publish", "topic", topic, "payload", string(payload))
	return nil
}

// Subscribe records the filter; h is never called.
func (m *Mock) Subscribe(filter string, _ Handler) error {
	m.mu.Lock()
	m.subs = append(m.subs, filter)
	m.mu.Unlock()
	m.log.Debug("mock_subscribe", "filter", filter)
	return nil
}

// Subscriptions returns the filters subscribed so far.
func (m *Mock) Subscriptions() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.subs...)
}

// Published is the number of publishes so far.
func (m *Mock) Published() uint64 { return m.published.Load() }

// Run blocks until ctx is done.
func (m *Mock) Run(ctx context.Context) error {
	m.log.Info("mock broker: MQTT is off, publishes are only logged")
	<-ctx.Done()
	m.closed.Store(true)
	return nil
}

// Ready is closed from the start: there is nothing to wait for.
func (m *Mock) Ready() <-chan struct{} { return m.ready }

// Addr is empty: the mock listens nowhere.
func (m *Mock) Addr() string { return "" }

// Close stops accepting publishes. It is idempotent.
func (m *Mock) Close() error {
	m.closed.Store(true)
	return nil
}
