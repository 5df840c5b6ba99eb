package liveview

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/store"
)

// BenchmarkViewMove is what the view adds to each customer/move on the
// broker's delivery goroutine: decode, update the shopper, and (with pages
// open) frame the event and offer it to each page's buffer.
func BenchmarkViewMove(b *testing.B) {
	for _, viewers := range []int{0, 1, 4} {
		b.Run(fmt.Sprintf("viewers=%d", viewers), func(b *testing.B) {
			plan, err := store.GridPlan(12, 10)
			if err != nil {
				b.Fatal(err)
			}
			v, err := New(Config{Enabled: true, MaxViewers: 8}, plan, topics, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			for range viewers {
				w := &viewer{ch: make(chan frame, viewerBuffer), lost: make(chan struct{}, 1)}
				v.viewers[w] = struct{}{}
				go func() { // a page that keeps up
					for {
						select {
						case <-w.ch:
						case <-w.lost:
						case <-stop:
							return
						}
					}
				}()
			}
			const shoppers = 1000
			payloads := make([][]byte, shoppers)
			for i := range payloads {
				payloads[i] = fmt.Appendf(nil, `{"id":"%d","ts":1796606156,"x":%d,"y":%d}`, i, i%12, i%10)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				v.onMove(topics.Move, payloads[i%shoppers])
			}
		})
	}
}
