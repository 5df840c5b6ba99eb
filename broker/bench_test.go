package broker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/storeflow/storeflow/event"
)

// BenchmarkEmbeddedPublish is the hot path's publish: a move-sized message
// from the inline client to one inline subscriber, on the fast path and on
// mochi's full path.
func BenchmarkEmbeddedPublish(b *testing.B) {
	br, err := NewEmbedded(Config{Port: 1883, ListenAddr: "127.0.0.1:0", TLSListenAddr: "127.0.0.1:0", Name: "bench"}, slog.New(slog.DiscardHandler), EmbeddedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	<-br.Ready()
	var got atomic.Int64
	if err := br.Subscribe("bench/move", func(string, []byte) { got.Add(1) }); err != nil {
		b.Fatal(err)
	}
	payload := event.AppendMove(nil, event.Move{ID: "127", TS: 192322800, X: 3, Y: 7})
	run := func(b *testing.B) {
		got.Store(0)
		b.ReportAllocs()
		for b.Loop() {
			if err := br.Publish(ctx, "bench/move", payload); err != nil {
				b.Fatal(err)
			}
		}
		if got.Load() == 0 {
			b.Fatal("the subscriber received nothing")
		}
	}
	// fast: only the exact inline subscription; full: a wildcard subscription
	// matches the topic too (mochi's topic index).
	b.Run("fast", run)
	if err := br.Subscribe("bench/#", func(string, []byte) {}); err != nil {
		b.Fatal(err)
	}
	if br.fast.handlers("bench/move") != nil {
		b.Fatal("a wildcard subscription left bench/move on the fast path")
	}
	b.Run("full", run)
}
