package broker

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/tcpproxy"
)

// A connection the network breaks is made again at once, every time: the
// reconnect does not wait longer after each loss (paho's own backoff slept
// 1 s after the second loss in a row, 2 s after the third, 4 s after the
// fourth: without broker persistence, what sensors publish meanwhile is lost).
func TestClientReconnectsAtOnceAfterEveryLoss(t *testing.T) {
	m := mosquittotest.New(t, "allow_anonymous true")
	px := tcpproxy.Start(t, m.Addr())
	c := runClient(t, externalConfig(t, "127.0.0.1", px.Addr()))
	for i := range 4 {
		start := time.Now()
		px.Cut()
		harness.Until(t, 15*time.Second, "the client reconnects", func() bool { return stats(c).Connects == uint64(i+2) })
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("loss %d: reconnected after %s, want at once", i+1, took.Round(time.Millisecond))
		}
	}
}

// While the broker answers but refuses (a broker that is starting, or going
// down), the client keeps trying at short intervals, so it is back soon
// after the broker is; paho's backoff had grown to 8 s by the fifth attempt.
func TestClientRetriesOftenWhileTheBrokerRefuses(t *testing.T) {
	m := mosquittotest.New(t, "allow_anonymous true")
	px := tcpproxy.Start(t, m.Addr())
	c := runClient(t, externalConfig(t, "127.0.0.1", px.Addr()))
	px.Refuse(true)
	px.Cut()
	harness.Until(t, 3*time.Second, "five attempts to reconnect", func() bool { return px.Refused() >= 5 })
	px.Refuse(false)
	start := time.Now()
	harness.Until(t, 15*time.Second, "the client reconnects", func() bool { return stats(c).Connects == 2 })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("reconnected %s after the broker took connections again, want within the backoff's bound", took.Round(time.Millisecond))
	}
}

// A publish the connection breaks under is no error: it is sent after the
// reconnect, from paho's session store (it had a packet id and was being
// written) or from the offline queue (paho refused it as not connected).
// Publishing from four goroutines through six cuts of the connection, no
// Publish fails and the subscriber gets every message.
func TestClientPublishesAtTheMomentOfDisconnectAreNotLost(t *testing.T) {
	m := mosquittotest.New(t, "allow_anonymous true\nmax_queued_messages 100000")
	px := tcpproxy.Start(t, m.Addr())
	cfg := externalConfig(t, "127.0.0.1", px.Addr())
	cfg.OfflineQueue = 100000
	c := runClient(t, cfg)
	// The phone is connected to the broker directly: it misses nothing.
	phone := dialPeer(t, peer{addr: m.Addr(), id: "phone", filter: "customer/prediction", qos: 1})
	received := tally(t, phone.msg)

	const publishers, each, cuts = 4, 3000, 6
	var (
		wg   sync.WaitGroup
		sent atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	for g := range publishers {
		wg.Go(func() {
			// About 4,000 publishes a second in all, connected or not.
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := range each {
				<-tick.C
				err := c.Publish(context.Background(), "customer/prediction", fmt.Appendf(nil, "%d-%d", g, i))
				sent.Add(1)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range cuts {
		at := int64(i+1) * publishers * each / (cuts + 2)
		harness.Until(t, 30*time.Second, "publishes before the next cut", func() bool { return sent.Load() >= at })
		px.Cut()
		harness.Until(t, 30*time.Second, "the client reconnects", func() bool { return stats(c).Connects == uint64(i+2) })
	}
	wg.Wait()

	const n = publishers * each
	harness.Until(t, 30*time.Second, "every message at the phone", func() bool { return received.unique() == n })
	twice := 0
	for _, k := range received.counts() {
		twice += k - 1
	}
	s := stats(c)
	t.Logf("%d publishes through %d cuts: all received, %d of them twice so far (QoS 1 resent after a lost PUBACK); stats %+v",
		n, cuts, twice, s)
	if len(errs) > 0 {
		t.Errorf("%d publishes failed, want none; first: %v", len(errs), errs[0])
	}
	if s.PublishErrors != 0 {
		t.Errorf("publish errors counted: %d, want 0", s.PublishErrors)
	}
}

// The store keeps its own copy of a PUBLISH and hands out copies: paho's
// writer (which sets the packet's length) and its resume after a reconnect
// (which sets DUP) never share a packet.
func TestResendStoreKeepsAndGivesCopies(t *testing.T) {
	s := resendStore{paho.NewOrderedMemoryStore()}
	s.Open()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.MessageID, pub.TopicName, pub.Payload = 1, 7, "customer/prediction", []byte("coupon")
	s.Put("o.7", pub)
	pub.RemainingLength = 99 // what the writer does to the packet it writes
	got, ok := s.Get("o.7").(*packets.PublishPacket)
	if !ok || got == pub {
		t.Fatalf("Get returned %T %p, want a copy of the stored packet (the caller's is %p)", got, got, pub)
	}
	if got.RemainingLength == 99 {
		t.Error("the store shares the packet Put was given")
	}
	got.Dup = true // what resume does
	if again := s.Get("o.7").(*packets.PublishPacket); again.Dup || again == got {
		t.Error("setting DUP on what Get returned changed the stored packet")
	}
	if got.Qos != 1 || got.MessageID != 7 || got.TopicName != pub.TopicName || string(got.Payload) != "coupon" {
		t.Errorf("the copy differs: %v", got)
	}
}

// tallied counts the messages of a channel by payload, read as they come.
type tallied struct {
	mu sync.Mutex
	n  map[string]int
}

// tally reads ch until the test ends.
func tally(t *testing.T, ch <-chan message) *tallied {
	r := &tallied{n: map[string]int{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-ch:
				r.mu.Lock()
				r.n[string(m.Payload)]++
				r.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return r
}

func (r *tallied) unique() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.n)
}

func (r *tallied) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.n)
}
