package broker

import (
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fastPath decides, topic by topic, which messages skip mochi's topic index.
// mochi finds a message's subscribers by walking its index and building
// fresh maps for every message: most of the broker's CPU and garbage on the
// hot path. A topic whose only subscribers are storeflow's own exact inline
// subscriptions (customer/move, with phones subscribed to
// customer/prediction) needs none of it: its messages, from the inline client
// (Embedded.Publish) or from a sensor over TCP (the OnPublish hook), go
// straight to the inline handlers.
//
// The decision follows the outside subscriptions as they come and go. A
// topic leaves the fast path before an outside subscription is added
// (OnSubscribe runs before mochi adds it: no message can take the fast path
// past a new subscriber) and comes back only once mochi's index, read again,
// has no outside subscriber left on it (after an unsubscribe, a clean
// session's end, or, checked every few seconds by Embedded.Run, an expired
// session).
type fastPath struct {
	mqtt.HookBase
	srv *mqtt.Server

	mu      sync.Mutex           // serialises changes of routes
	local   map[string][]Handler // exact inline subscriptions, by topic
	pending int                  // outside subscribes between OnSubscribe and OnSubscribed
	routes  atomic.Pointer[map[string][]Handler]
	topics  func(n int) // reports how many topics are on the fast path (a gauge); nil: nowhere
}

func newFastPath(srv *mqtt.Server, topics func(int)) *fastPath {
	f := &fastPath{srv: srv, local: map[string][]Handler{}, topics: topics}
	f.routes.Store(&map[string][]Handler{})
	return f
}

// handlers returns the inline handlers of topic when it is on the fast
// path, nil when its messages must go through mochi. Lock-free.
func (f *fastPath) handlers(topic string) []Handler { return (*f.routes.Load())[topic] }

// addInline records an inline subscription made in mochi's index.
func (f *fastPath) addInline(filter string, h Handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.ContainsAny(filter, "+#") && !strings.HasPrefix(filter, "$share/") {
		f.local[filter] = append(f.local[filter], h)
	}
	f.recompute()
}

// refresh reads mochi's index again (Embedded.Run calls it now and then:
// an expired session's subscriptions leave the index without a hook).
func (f *fastPath) refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recompute()
}

// recompute puts on the fast path every exact inline topic that mochi's
// index gives no other subscriber: no outside client's subscription (of a
// client mochi still holds), no shared subscription, and no inline
// subscription beyond the exact ones (a wildcard). f.mu is held.
func (f *fastPath) recompute() {
	routes := make(map[string][]Handler, len(f.local))
	if f.pending == 0 {
		for topic, hs := range f.local {
			subs := f.srv.Topics.Subscribers(topic)
			if len(subs.InlineSubscriptions) == len(hs) && len(subs.Shared) == 0 && !f.anyClient(subs.Subscriptions) {
				routes[topic] = hs
			}
		}
	}
	f.routes.Store(&routes)
	if f.topics != nil {
		f.topics(len(routes))
	}
}

func (f *fastPath) anyClient(subs map[string]packets.Subscription) bool {
	for id := range subs {
		if _, ok := f.srv.Clients.Get(id); ok {
			return true
		}
	}
	return false
}

func (f *fastPath) ID() string { return "storeflow-fast-path" }

func (f *fastPath) Provides(b byte) bool {
	switch b {
	case mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPublish:
		return true
	}
	return false
}

// OnSubscribe takes every topic off the fast path before mochi adds an
// outside client's subscription; OnSubscribed decides again once it is in
// the index.
func (f *fastPath) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline {
		f.mu.Lock()
		f.pending++
		f.recompute()
		f.mu.Unlock()
	}
	return pk
}

func (f *fastPath) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if !cl.Net.Inline {
		f.mu.Lock()
		f.pending--
		f.recompute()
		f.mu.Unlock()
	}
}

// OnUnsubscribed runs after mochi removed the subscriptions (an UNSUBSCRIBE,
// or the end of a clean session).
func (f *fastPath) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Net.Inline {
		f.refresh()
	}
}

// OnPublish hands a sensor's message on a fast topic to the inline handlers
// and tells mochi to skip routing it (it still acknowledges a QoS 1 or 2
// publish, after the handlers ran). It runs after the auth hook's checks. A
// retained message goes through mochi, which keeps it.
func (f *fastPath) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || pk.FixedHeader.Retain {
		return pk, nil
	}
	hs := f.handlers(pk.TopicName)
	if hs == nil {
		return pk, nil
	}
	for _, h := range hs {
		h(pk.TopicName, pk.Payload)
	}
	return pk, errIgnore
}

// errIgnore is packets.CodeSuccessIgnore as an error made once: converting
// the Code struct to an error allocates.
var errIgnore error = packets.CodeSuccessIgnore
