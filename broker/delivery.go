package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/storeflow/storeflow/internal/ratelog"
)

// delivery accounts for the last hop: every message mochi routes to an
// outside subscriber is either written to it (delivered) or counted as
// dropped with a reason, so published = delivered + dropped holds per
// subscriber. It also bounds what an offline persistent session keeps: past
// BROKER_SESSION_QUEUE the oldest unsent message makes room for the newest.
//
// QoS 0 messages are counted when written, or when the client's queue is full.
// QoS 1 and 2 messages live in mochi's in-flight store from routing until the
// client acknowledges them; the hook remembers which of them have not been
// written yet (unsent), so a message that is dropped, evicted or outlives its
// session is counted once, and a retransmission is not counted as a second
// delivery.
type delivery struct {
	mqtt.HookBase
	srv   *mqtt.Server
	limit int // BROKER_SESSION_QUEUE
	queue int // BROKER_CLIENT_QUEUE, for the log line
	m     *metrics
	warn  *ratelog.Logger

	mu       sync.Mutex
	sessions map[string]*session // by client id
}

// session is one client id's QoS 1/2 messages not yet written, oldest first.
type session struct {
	seq    uint64
	unsent map[uint16]uint64 // packet id → seq of the message that holds it now
	order  []pending         // FIFO; entries whose seq no longer matches are stale
	head   int
}

type pending struct {
	id  uint16
	seq uint64
}

func newDelivery(srv *mqtt.Server, limit, queue int, m *metrics, log *slog.Logger) *delivery {
	return &delivery{srv: srv, limit: limit, queue: queue, m: m, warn: ratelog.New(log, logEvery), sessions: map[string]*session{}}
}

func (d *delivery) ID() string { return "storeflow-delivery" }

func (d *delivery) Provides(b byte) bool {
	switch b {
	case mqtt.OnQosPublish, mqtt.OnPacketSent, mqtt.OnPublishDropped, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnDisconnect, mqtt.OnPacketIDExhausted:
		return true
	}
	return false
}

// OnQosPublish runs when mochi stores a QoS 1/2 message for a client, before
// it queues it for writing (or keeps it, the client being offline).
func (d *delivery) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if cl.Net.Inline || pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Dup {
		return // acks of the client's own publishes, and retransmissions
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[cl.ID]
	if s == nil {
		s = &session{unsent: map[uint16]uint64{}}
		d.sessions[cl.ID] = s
	}
	s.seq++
	s.unsent[pk.PacketID] = s.seq
	s.order = append(s.order, pending{pk.PacketID, s.seq})
	if cl.Closed() {
		d.trim(cl, s)
	}
	if n := len(s.order) - s.head; n > 2*len(s.unsent)+64 {
		s.compact(cl)
	}
}

// trim evicts the oldest unsent messages of an offline session beyond the
// limit. Caller holds d.mu.
func (d *delivery) trim(cl *mqtt.Client, s *session) {
	evicted := 0
	for cl.State.Inflight.Len() > d.limit && s.head < len(s.order) {
		p := s.order[s.head]
		s.head++
		if s.unsent[p.id] != p.seq {
			continue
		}
		delete(s.unsent, p.id)
		if cl.State.Inflight.Delete(p.id) {
			atomic.AddInt64(&d.srv.Info.Inflight, -1)
			evicted++
		}
	}
	if evicted > 0 {
		d.m.dropped.WithLabelValues(dropSessionQueue).Add(float64(evicted))
		d.warn.Log(slog.LevelWarn, "drop:"+dropSessionQueue, "offline session full: oldest messages dropped",
			"client_id", cl.ID, "dropped", evicted, "limit", d.limit, "setting", "BROKER_SESSION_QUEUE")
	}
	if s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

// compact forgets stale entries: messages written, or dropped by mochi.
func (s *session) compact(cl *mqtt.Client) {
	live := s.order[:0]
	for _, p := range s.order[s.head:] {
		if s.unsent[p.id] != p.seq {
			continue
		}
		if _, ok := cl.State.Inflight.Get(p.id); !ok {
			delete(s.unsent, p.id)
			continue
		}
		live = append(live, p)
	}
	s.order, s.head = live, 0
}

// OnPacketSent runs when a packet's bytes have been written to the client.
func (d *delivery) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if cl.Net.Inline || pk.FixedHeader.Type != packets.Publish {
		return
	}
	if pk.FixedHeader.Qos == 0 {
		d.m.delivered.Inc()
		return
	}
	if d.takeUnsent(cl.ID, pk.PacketID) { // not a retransmission
		d.m.delivered.Inc()
	}
}

// takeUnsent forgets packet id of client id as not yet written and reports
// whether it was: a message leaves unsent once, however often it is written
// or dropped.
func (d *delivery) takeUnsent(id string, packetID uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[id]
	if s == nil {
		return false
	}
	if _, ok := s.unsent[packetID]; !ok {
		return false
	}
	delete(s.unsent, packetID)
	return true
}

// OnPublishDropped runs when a connected client's write queue is full. mochi
// takes a QoS 1/2 message back out of the in-flight store right after; the
// stale entry left in unsent is dropped by the next compact, and cannot be
// counted twice, since every other count checks the in-flight store first or
// runs only for messages still in it.
func (d *delivery) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	d.m.dropped.WithLabelValues(dropClientQueue).Inc()
	d.warn.Log(slog.LevelWarn, "drop:"+dropClientQueue, "subscriber too slow: messages dropped",
		"client_id", cl.ID, "topic", pk.TopicName, "queue", d.queue, "setting", "BROKER_CLIENT_QUEUE")
}

// OnQosDropped runs for each message mochi removes from a session's in-flight
// store without it being acknowledged: a clean session replaced by a new
// connection, or a message past its expiry.
func (d *delivery) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || cl.IsTakenOver() {
		// A persistent session taken over by a new connection: mochi clears
		// the old client's store after copying it to the new one. (A clean
		// takeover marks the old client only after clearing: counted.)
		return
	}
	if d.takeUnsent(cl.ID, pk.PacketID) {
		d.m.dropped.WithLabelValues(dropSessionEnded).Inc()
	}
}

// OnDisconnect runs when a client's connection ends. A clean session ends
// with it: what it had not been sent is counted now (mochi clears it right
// after, without a hook that could tell it from a message already written).
// A persistent session stays, trimmed to its limit.
func (d *delivery) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline || cl.IsTakenOver() {
		return // a new connection owns the session now
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[cl.ID]
	if s == nil {
		return
	}
	if expire {
		d.end(cl, s, dropSessionEnded)
		return
	}
	d.trim(cl, s)
}

// OnClientExpired runs when an offline session passes its expiry.
func (d *delivery) OnClientExpired(cl *mqtt.Client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.sessions[cl.ID]; s != nil {
		d.end(cl, s, dropSessionExpired)
	}
}

// end counts a session's unsent messages as dropped and forgets it. Caller
// holds d.mu.
func (d *delivery) end(cl *mqtt.Client, s *session, reason string) {
	n := 0
	for id := range s.unsent {
		if _, ok := cl.State.Inflight.Get(id); ok {
			n++
		}
	}
	delete(d.sessions, cl.ID)
	if n > 0 {
		d.m.dropped.WithLabelValues(reason).Add(float64(n))
		d.warn.Log(slog.LevelWarn, "drop:"+reason, "session ended with messages not yet sent", "client_id", cl.ID,
			"dropped", n, "reason", reason)
	}
}

func (d *delivery) OnPacketIDExhausted(cl *mqtt.Client, _ packets.Packet) {
	// mochi counts it in Info.InflightDropped (reason inflight_full); only the
	// log line is ours.
	d.warn.Log(slog.LevelWarn, "drop:packet_ids", "client acknowledges nothing: messages dropped", "client_id", cl.ID)
}
