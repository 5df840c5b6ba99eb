package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/tcpproxy"
	"github.com/storeflow/storeflow/store"
)

// A focus the broker delivers again gets one coupon. The redelivery is the
// real one: storeflow's connection to mosquitto runs through a proxy that
// stops passing on what storeflow sends, so mosquitto gets no PUBACK for the
// focus events it delivered (nor the coupons storeflow made of them); then
// the proxy cuts the connection. mosquitto keeps storeflow's persistent
// session and, when storeflow is back, sends the unacknowledged focus events
// again with the DUP flag; paho's store sends the coupons again. Before the
// de-duplication every redelivered focus made a second coupon (threshold 0:
// the visit ledger offered the next one).
func TestRedeliveredFocusGetsOneCoupon(t *testing.T) {
	t.Parallel()
	m := mosquittotest.New(t, "allow_anonymous true")
	px := tcpproxy.Start(t, m.Addr())
	sys := startOn(t, px.Addr(), map[string]string{
		"MQTT_NAME":            "storeflow-redeliver",
		"PREDICTION_THRESHOLD": "0",
	})
	obs := newCouponCounter(t, m.Addr(), "observer-redeliver")
	sensor := connectOutside(t, m.Addr(), "sensor-redeliver", nil, "", 1)

	now := time.Now().Unix()
	const n = 10 // below mosquitto's 20 messages in flight per client
	focus := focusPairs(t, sys, now, n+1, 2)
	marker := focus[n]
	focus = focus[:n]

	px.Hold()
	for _, f := range focus {
		if tok := sensor.c.Publish("customer/focus", 1, false, f.payload(now)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("sensor publish: %v", tok.Error())
		}
	}
	sys.waitMetric(t, n, 10*time.Second, "storeflow_events_accepted_total", "kind=focus")
	px.Cut()
	sys.waitMetric(t, 2, 10*time.Second, "storeflow_mqtt_client_events_total", "event=connect")
	// Once all n deliveries and n redeliveries are settled, a last focus's
	// coupon is storeflow's last publish: when it has arrived, so has
	// everything before it.
	waitSettled(t, sys, 2*n)
	if tok := sensor.c.Publish("customer/focus", 1, false, marker.payload(now)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("sensor publish: %v", tok.Error())
	}
	obs.waitFor(t, marker.key(), 15*time.Second)

	c := obs.counts(focus)
	t.Logf("%d focus events, each delivered twice: %d coupons received for %d of them, %d focus events with a second coupon, %d coupons received again; duplicate outcomes %v",
		n, c.coupons, c.focusWithCoupon, c.second, c.again, sys.metric(t, "storeflow_focus_outcomes_total", "outcome=duplicate"))
	if c.focusWithCoupon != n || c.second != 0 {
		t.Errorf("%d of %d focus events got a coupon, %d got a second one; want one each", c.focusWithCoupon, n, c.second)
	}
	if got := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=duplicate"); got != n {
		t.Errorf("duplicate outcomes = %v, want %d: mosquitto redelivered every focus", got, n)
	}
}

// Focus events published through three broker restarts (SIGTERM, start
// again), with broker persistence: every one gets its coupon, and only one.
func TestBrokerRestartsWithPersistenceLoseNoFocus(t *testing.T) {
	t.Parallel()
	r := runRestarts(t, true)
	if r.lost != 0 || r.second != 0 {
		t.Errorf("%d of %d focus events got no coupon and %d a second one, want none", r.lost, r.published, r.second)
	}
}

// Without broker persistence a restart forgets storeflow's session and
// subscriptions: what the sensor publishes before storeflow has subscribed
// again is dropped by the broker, and nothing can bring it back. The test
// reports how much that was; it demands no second coupon, no failed publish,
// and that every focus storeflow got has its coupon.
func TestBrokerRestartsWithoutPersistence(t *testing.T) {
	t.Parallel()
	r := runRestarts(t, false)
	if r.second != 0 {
		t.Errorf("%d focus events got a second coupon, want none", r.second)
	}
	if r.coupons < r.received {
		t.Errorf("storeflow got %d focus events and published %d coupons: every focus it got must have its coupon", r.received, r.coupons)
	}
}

// restartCounts is what runRestarts measured.
type restartCounts struct {
	published int // focus events the sensor published, each acknowledged by the broker
	received  int // different focus events that reached storeflow
	coupons   int // coupons storeflow published
	lost      int // focus events without a coupon at the observer
	second    int // focus events with more than one different coupon at the observer
}

// runRestarts publishes 2,000 focus events (distinct shoppers and
// departments, all with a coupon at threshold 0) at about 500 a second from
// a sensor that keeps what it could not send and sends it again (QoS 1, its
// own session and store), while mosquitto is stopped and started three
// times; an observer with a session of its own counts the coupons.
func runRestarts(t *testing.T, persistent bool) restartCounts {
	t.Helper()
	m := mosquittotest.NewWith(t, mosquittotest.Options{Conf: "allow_anonymous true\nmax_queued_messages 100000", Persistent: persistent})
	sys := startOn(t, m.Addr(), map[string]string{
		"MQTT_NAME":            "storeflow-restart",
		"PREDICTION_THRESHOLD": "0",
	})
	obs := newCouponCounter(t, m.Addr(), "observer-restart")
	store := broker.NewStore() // paho's own store races with its resend across reconnects (paho #703)
	sensor := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + m.Addr()).SetClientID("sensor-restart").
		SetCleanSession(false).SetStore(store).SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(true))
	if tok := sensor.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("sensor: connect: %v", tok.Error())
	}
	t.Cleanup(func() { sensor.Disconnect(100) })

	now := time.Now().Unix()
	const n, restarts = 2000, 3
	focus := focusPairs(t, sys, now, n+2, 1)
	markers := focus[n:]
	focus = focus[:n]

	var sent atomic.Int64
	toks := make(chan paho.Token, n)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for _, f := range focus {
			<-tick.C
			toks <- sensor.Publish("customer/focus", 1, false, f.payload(now))
			sent.Add(1)
		}
		close(toks)
	}()
	for i := range restarts {
		at := int64(i+1) * n / (restarts + 1)
		deadline := time.Now().Add(30 * time.Second)
		for sent.Load() < at {
			if time.Now().After(deadline) {
				t.Fatalf("the sensor published %d focus events in 30s, want %d", sent.Load(), at)
			}
			time.Sleep(time.Millisecond) // polling the publisher's progress with a deadline
		}
		m.Stop()
		m.Start()
	}
	for tok := range toks {
		if !tok.WaitTimeout(30 * time.Second) {
			t.Fatal("a sensor publish did not complete within 30s")
		}
		// A write the restart broke fails the token, but the message stays
		// in the sensor's store and is sent again after its reconnect; one
		// without a packet id was never stored: that one would be lost.
		if err := tok.Error(); err != nil && tok.(*paho.PublishToken).MessageID() == 0 {
			t.Fatalf("sensor publish: %v", err)
		}
	}
	// The store is empty once the broker acknowledged every focus event.
	deadline := time.Now().Add(30 * time.Second)
	for len(store.All()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the broker has not acknowledged %d of the sensor's focus events within 30s", len(store.All()))
		}
		time.Sleep(10 * time.Millisecond) // polling the sensor's store with a deadline
	}
	// The first marker comes after every focus event at storeflow (one
	// queue per session at the broker); once everything is settled, the
	// second marker's coupon is storeflow's last publish.
	for _, mk := range markers {
		if tok := sensor.Publish("customer/focus", 1, false, mk.payload(now)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("sensor publish marker: %v", tok.Error())
		}
		obs.waitFor(t, mk.key(), 30*time.Second)
		waitSettled(t, sys, 0)
	}

	c := obs.counts(focus)
	accepted := sys.metric(t, "storeflow_events_accepted_total", "kind=focus") - float64(len(markers))
	dups := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=duplicate")
	r := restartCounts{
		published: n,
		received:  int(accepted),
		coupons:   int(sys.metric(t, "storeflow_coupons_published_total")) - len(markers),
		lost:      n - c.focusWithCoupon,
		second:    c.second,
	}
	t.Logf("persistence %v, %d restarts: %d focus events published; %d reached storeflow (%v more delivered again, counted as duplicate); "+
		"%d coupons published; observer: %d focus events with a coupon, %d without, %d with a second coupon, %d coupons received again; "+
		"storeflow's connection: %v connects, %v lost, %v publish errors, %v resent, %v queued offline",
		persistent, restarts, n, r.received, dups, r.coupons, c.focusWithCoupon, r.lost, c.second, c.again,
		sys.metric(t, "storeflow_mqtt_client_events_total", "event=connect"),
		sys.metric(t, "storeflow_mqtt_client_events_total", "event=connection_lost"),
		sys.metric(t, "storeflow_mqtt_client_events_total", "event=publish_error"),
		sys.metric(t, "storeflow_mqtt_client_events_total", "event=resent"),
		sys.metric(t, "storeflow_mqtt_client_events_total", "event=offline_queued"))
	if got := sys.metric(t, "storeflow_focus_outcomes_total", "outcome=publish_error"); got != 0 {
		t.Errorf("%v coupons failed to publish as the broker went away, want 0 (queued and sent after the reconnect)", got)
	}
	return r
}

// focusPair is one shopper in one department.
type focusPair struct {
	id  string
	dep store.Department
}

func (f focusPair) payload(ts int64) string {
	return fmt.Sprintf(`{"id":%q,"ts":%d,"dep":%q}`, f.id, ts, f.dep)
}

func (f focusPair) key() string { return f.id + "/" + f.dep.String() }

// focusPairs returns n different shoppers-in-departments of the app's
// catalog whose department has at least perDep coupons valid at ts: at
// threshold 0, the first focus of each gets a coupon.
func focusPairs(t *testing.T, sys *system, ts int64, n, perDep int) []focusPair {
	t.Helper()
	cat := sys.app.Catalog()
	var deps []store.Department
	for _, d := range store.Departments {
		if valid, _ := cat.ValidCoupons(context.Background(), d, store.DayOf(ts), nil); len(valid) >= perDep {
			deps = append(deps, d)
		}
	}
	var pairs []focusPair
	for _, d := range deps {
		for _, c := range cat.Customers() {
			if pairs = append(pairs, focusPair{c.ID, d}); len(pairs) == n {
				return pairs
			}
		}
	}
	t.Fatalf("%d shoppers in departments with %d coupons valid today, want %d", len(pairs), perDep, n)
	return nil
}

// waitSettled waits until every focus event storeflow took in has an
// outcome, at least want of them, and nothing waits in its offline queue.
func waitSettled(t *testing.T, sys *system, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		outcomes := sys.metric(t, "storeflow_focus_outcomes_total")
		accepted := sys.metric(t, "storeflow_events_accepted_total", "kind=focus") + sys.metric(t, "storeflow_focus_outcomes_total", "outcome=duplicate")
		pending := sys.metric(t, "storeflow_mqtt_client_offline_pending")
		if outcomes >= want && outcomes == accepted && pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled within 30s: %v outcomes for %v focus events (want %v), %v publishes pending", outcomes, accepted, want, pending)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// couponCounter is an outside client with a persistent session that counts
// the coupons it receives by shopper and department. It reconnects by
// itself and subscribes again on every connect (a broker without
// persistence forgets the subscription).
type couponCounter struct {
	mu   sync.Mutex
	got  map[string]map[string]int // shopper/department → payload → times received
	seen chan string               // keys as they come
}

func newCouponCounter(t *testing.T, addr, id string) *couponCounter {
	t.Helper()
	cc := &couponCounter{got: map[string]map[string]int{}, seen: make(chan string, 100000)}
	handle := func(_ paho.Client, msg paho.Message) {
		var p struct {
			Customer struct{ ID string }
			Coupon   struct{ Department string }
		}
		if err := json.Unmarshal(msg.Payload(), &p); err != nil {
			t.Errorf("observer: prediction %s: %v", msg.Payload(), err)
			return
		}
		k := p.Customer.ID + "/" + p.Coupon.Department
		cc.mu.Lock()
		if cc.got[k] == nil {
			cc.got[k] = map[string]int{}
		}
		cc.got[k][string(msg.Payload())]++
		cc.mu.Unlock()
		select {
		case cc.seen <- k:
		default:
		}
	}
	subscribed := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true).SetDefaultPublishHandler(handle).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe("customer/prediction", 1, handle)
			tok.WaitTimeout(5 * time.Second)
			select {
			case subscribed <- tok.Error():
			default:
			}
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	harness.Done(t, 5*time.Second, "observer subscribed", subscribed)
	return cc
}

// waitFor waits for a coupon for key.
func (cc *couponCounter) waitFor(t *testing.T, key string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case k := <-cc.seen:
			if k == key {
				return
			}
		case <-deadline:
			t.Fatalf("no coupon for %s within %s", key, within)
		}
	}
}

type couponCounts struct {
	coupons         int // coupon messages received for the pairs
	focusWithCoupon int // pairs with a coupon
	second          int // pairs with more than one different coupon message
	again           int // messages received more than once (the same coupon, sent again)
}

func (cc *couponCounter) counts(pairs []focusPair) couponCounts {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var c couponCounts
	for _, p := range pairs {
		got := cc.got[p.key()]
		if len(got) > 0 {
			c.focusWithCoupon++
		}
		if len(got) > 1 {
			c.second++
		}
		for _, times := range got {
			c.coupons += times
			c.again += times - 1
		}
	}
	return c
}
