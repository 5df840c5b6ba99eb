package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Embedded is an in-process mochi-mqtt v2 broker. Outside clients (phones,
// mosquitto_sub) reach it over TCP; storeflow's own parts publish and subscribe
// through the inline client, without a network hop.
type Embedded struct {
	srv       *mqtt.Server
	tcp       *listeners.TCP
	qos       byte
	log       *slog.Logger
	nextID    atomic.Int32
	closed    atomic.Bool
	ready     chan struct{}
	once      sync.Once
	closeOnce sync.Once
}

// NewEmbedded builds the broker and binds its TCP listener, so Addr is known
// (and a busy port is an error) before Run.
func NewEmbedded(cfg Config, log *slog.Logger) (*Embedded, error) {
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       log,
	})
	addr := cfg.Listen()
	if !isLoopback(addr) {
		log.Warn("embedded broker listens beyond loopback and accepts anonymous clients", "listen_addr", addr)
	}
	// Without an auth hook mochi refuses every client. Anonymous access is the
	// demo default; the listener is loopback-only unless configured otherwise.
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen on %s (BROKER_LISTEN_ADDR): %w", addr, err)
	}
	return &Embedded{srv: srv, tcp: tcp, qos: cfg.QoS, log: log, ready: make(chan struct{})}, nil
}

// Addr is the TCP address outside clients connect to (the real port when the
// configured one was 0).
func (b *Embedded) Addr() string { return b.tcp.Address() }

// Ready is closed once the broker serves.
func (b *Embedded) Ready() <-chan struct{} { return b.ready }

// Run serves until ctx is done, then disconnects every client and closes the
// listener. It returns nil on a normal stop.
func (b *Embedded) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.log.Info("embedded broker serving", "addr", b.Addr())
	b.once.Do(func() { close(b.ready) })
	<-ctx.Done()
	return b.Close()
}

// Close disconnects every client and closes the listener. Run calls it when
// its context ends; call it directly only for a broker that never ran. It is
// safe to call more than once (mochi's own Close is not).
func (b *Embedded) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		err = b.srv.Close()
	})
	return err
}

// Publish delivers payload to every subscriber. Inline subscribers run before
// it returns. The payload is copied so the caller may reuse its buffer as soon
// as Publish returns. (Comment corrected: mochi v2.7.9 itself copies the
// payload for each TCP subscriber's write queue, in packets.Packet.Copy; this
// copy covers what gets the slice itself, an inline handler that keeps it or a
// hook, and a mochi version that stops copying.)
func (b *Embedded) Publish(_ context.Context, topic string, payload []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := b.srv.Publish(topic, bytes.Clone(payload), false, b.qos); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe registers h for messages matching filter. It can be called before
// or after Run; h runs synchronously on the publisher's goroutine.
func (b *Embedded) Subscribe(filter string, h Handler) error {
	id := int(b.nextID.Add(1))
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload)
	})
	if err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	return nil
}
