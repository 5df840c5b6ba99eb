package broker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/storeflow/storeflow/event"
)

// BenchmarkEmbeddedPublish is the hot path's publish: a move-sized message
// through the embedded broker's inline client to one inline subscriber.
func BenchmarkEmbeddedPublish(b *testing.B) {
	br, err := NewEmbedded(Config{Port: 1883, ListenAddr: "127.0.0.1:0", TLSListenAddr: "127.0.0.1:0", Name: "bench"}, slog.New(slog.DiscardHandler))
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
