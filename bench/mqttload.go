package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/storeflow/storeflow/event"
)

// sensor is a minimal MQTT 3.1.1 publisher: CONNECT, QoS 0 PUBLISH packets
// written through a buffer flushed once per visit, DISCONNECT. It reads
// nothing after the CONNACK, so the load generator costs the cores little
// besides the writes the brokers must read anyway.
type sensor struct {
	conn net.Conn
	w    *bufio.Writer
}

func dialSensor(ctx context.Context, addr, clientID string) (*sensor, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: sensor connection to %s: %w", addr, err)
	}
	// Variable header: protocol name, level 4 (3.1.1), clean session, no
	// keepalive (the connection never idles while it plays).
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0}, byte(len(clientID)>>8), byte(len(clientID)))
	body = append(body, clientID...)
	pkt := appendRemainingLength([]byte{0x10}, len(body))
	pkt = append(pkt, body...)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var ack [4]byte
	if _, err = conn.Write(pkt); err == nil {
		_, err = io.ReadFull(conn, ack[:])
	}
	if err == nil && (ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0) {
		err = fmt.Errorf("CONNACK % x: refused", ack)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bench: sensor connection to %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &sensor{conn: conn, w: bufio.NewWriterSize(conn, 8192)}, nil
}

// appendRemainingLength appends MQTT's variable-length integer.
func appendRemainingLength(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// publish buffers one QoS 0 PUBLISH; errors surface at flush.
func (s *sensor) publish(topic string, payload []byte) {
	var hdr [8]byte
	h := appendRemainingLength(append(hdr[:0], 0x30), 2+len(topic)+len(payload))
	h = append(h, byte(len(topic)>>8), byte(len(topic)))
	_, _ = s.w.Write(h)
	_, _ = s.w.WriteString(topic)
	_, _ = s.w.Write(payload)
}

func (s *sensor) flush() error { return s.w.Flush() }

// close sends DISCONNECT and closes the connection.
func (s *sensor) close() {
	_, _ = s.w.Write([]byte{0xe0, 0})
	_ = s.w.Flush()
	_ = s.conn.Close()
}

// dialSensors opens n sensor connections to addr.
func dialSensors(ctx context.Context, addr string, n int) ([]*sensor, error) {
	var out []*sensor
	for i := range n {
		s, err := dialSensor(ctx, addr, fmt.Sprintf("bench-sensor-%d", i+1))
		if err != nil {
			closeSensors(out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func closeSensors(ss []*sensor) {
	for _, s := range ss {
		s.close()
	}
}

// dialPhone connects a paho client to addr and subscribes it to topic at
// qos; h gets each message as it arrives.
func dialPhone(addr, clientID, topic string, qos byte, h func(payload []byte)) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("bench: subscriber connection to %s: %v", addr, cmpErr(tok.Error(), "no CONNACK within 10s"))
	}
	tok := c.Subscribe(topic, qos, func(_ paho.Client, m paho.Message) { h(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("bench: subscribe %s on %s: %v", topic, addr, cmpErr(tok.Error(), "no SUBACK within 10s"))
	}
	return c, nil
}

func cmpErr(err error, otherwise string) error {
	if err != nil {
		return err
	}
	return errors.New(otherwise)
}

// script is the scripted visits of the TCP bench: enter, linger moves in
// Boys one second apart, exit.
type script struct {
	enter, move, exit string
	coupons           string // the topic the phone subscribes to
	x, y              int
	linger            int
	dwellMove         int // index of the move that completes the dwell
	customers         []string
}

// focusKey is a focus as a coupon names it: the shopper and the ts of the
// move that completed the dwell.
type focusKey struct {
	id string
	ts int64
}

// visitTS is when visit i of a run starting at base begins: a customer's
// next visit comes after their last (FOCUS_DEDUP_WINDOW would merge a focus
// with the same shopper, department and ts).
func (s *script) visitTS(base int64, i int) int64 {
	return base + int64(i/len(s.customers)*(s.linger+1))
}

// span is the event time n visits from base take.
func (s *script) span(n int) int64 { return s.visitTS(0, n) + int64(s.linger+1) }

// play sends n visits starting at event time base over sensors, each
// customer's visits on one connection so that they stay in order; rate is
// moves per second over all sensors, 0 for as fast as the connections take
// them. sent is told each dwell-completing move just before the visit that
// holds it is flushed. play returns when everything is written.
func (s *script) play(ctx context.Context, sensors []*sensor, n int, base int64, rate float64, sent func(focusKey, time.Time)) error {
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	p := len(sensors)
	for k, sn := range sensors {
		g.Go(func() error {
			var buf []byte
			moves := 0
			for i := range n {
				if i%len(s.customers)%p != k {
					continue
				}
				if rate > 0 {
					due := start.Add(time.Duration(float64(moves) / (rate / float64(p)) * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d): // the pace
						case <-ctx.Done():
							return ctx.Err()
						}
					}
				}
				id := s.customers[i%len(s.customers)]
				ts := s.visitTS(base, i)
				buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: ts})
				sn.publish(s.enter, buf)
				for m := range s.linger {
					buf = event.AppendMove(buf[:0], event.Move{ID: id, TS: ts + int64(m), X: s.x, Y: s.y})
					sn.publish(s.move, buf)
				}
				buf = event.AppendPresence(buf[:0], event.Presence{ID: id, TS: ts + int64(s.linger)})
				sn.publish(s.exit, buf)
				moves += s.linger
				sent(focusKey{id, ts + int64(s.dwellMove)}, time.Now())
				if err := sn.flush(); err != nil {
					return fmt.Errorf("bench: sensor %d: %w", k+1, err)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// phone is what the coupon subscriber saw: per expected focus, the time its
// dwell-completing move was sent and when its coupon arrived.
type phone struct {
	mu        sync.Mutex
	sentAt    map[focusKey]time.Time
	lat       []time.Duration
	delivered int // coupons for a focus of the run, each counted once
	other     int // coupons again, or for no focus of the run
	last      time.Time
}

func newPhone(visits int) *phone {
	return &phone{sentAt: make(map[focusKey]time.Time, visits), lat: make([]time.Duration, 0, visits)}
}

func (ph *phone) sent(k focusKey, at time.Time) {
	ph.mu.Lock()
	ph.sentAt[k] = at
	ph.mu.Unlock()
}

// coupon is the subscriber's handler.
func (ph *phone) coupon(payload []byte) {
	now := time.Now()
	o, err := event.DecodeOffer(payload)
	ph.mu.Lock()
	defer ph.mu.Unlock()
	t, ok := ph.sentAt[focusKey{o.CustomerID, o.TS}]
	if err != nil || !ok {
		ph.other++
		return
	}
	delete(ph.sentAt, focusKey{o.CustomerID, o.TS})
	ph.lat = append(ph.lat, now.Sub(t))
	ph.delivered++
	ph.last = now
}

// counts returns the coupons delivered so far and when the last arrived.
func (ph *phone) counts() (delivered int, last time.Time) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return ph.delivered, ph.last
}
