package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/storeflow/storeflow/app"
	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/store"
)

// system is one storeflow process started by a test, with its embedded broker
// on a free loopback port.
type system struct {
	app *app.App
}

// startSystem runs the real wiring (app) with the embedded broker on
// 127.0.0.1:0 and the simulator off unless extra turns it on. It returns once
// the app is ready and stops it when the test ends.
func startSystem(t testing.TB, extra map[string]string) *system {
	t.Helper()
	// Most tests need a model, not a training: a small shared one is loaded
	// unless the test sets MODEL_FILE itself ("" trains at start, as the
	// demo does).
	if _, ok := extra["MODEL_FILE"]; !ok {
		extra = maps.Clone(extra)
		if extra == nil {
			extra = map[string]string{}
		}
		extra["MODEL_FILE"] = modeltest.File(t)
	}
	a, err := newApp(context.Background(), t, extra)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	harness.Start(t, "storeflow", a.Run, a.Ready())
	return &system{app: a}
}

// startOn is startSystem against the outside broker at addr (host:port)
// instead of the embedded one.
func startOn(t *testing.T, addr string, extra map[string]string) *system {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	environ := map[string]string{"MQTT_HOST": "127.0.0.1", "MQTT_PORT": port}
	maps.Copy(environ, extra)
	return startSystem(t, environ)
}

// message is one MQTT message seen by an outside client.
type message struct {
	Topic   string
	Payload []byte
}

// client is an outside MQTT client over TCP, like a phone or mosquitto_sub.
type client struct {
	t       *testing.T
	c       paho.Client
	msg     chan message
	pending []message // received, not yet asked for
}

// dial connects an outside client to addr (host:port) and, when filter is not
// empty, subscribes to it before returning, so nothing published afterwards
// is missed.
func dial(t *testing.T, addr, id, filter string) *client {
	t.Helper()
	return dialAs(t, addr, id, "", "", filter)
}

// dialAs is dial with a username and password, for a broker that refuses
// anonymous clients; an empty user connects anonymously.
func dialAs(t *testing.T, addr, id, user, password, filter string) *client {
	t.Helper()
	cl := &client{t: t, msg: make(chan message, 10000)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(password).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetOrderMatters(true)
	cl.c = paho.NewClient(opts)
	if tok := cl.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("outside client %s: connect to %s as %q: %v", id, addr, user, tok.Error())
	}
	t.Cleanup(func() { cl.c.Disconnect(100) })
	if filter != "" {
		tok := cl.c.Subscribe(filter, 0, func(_ paho.Client, m paho.Message) {
			select {
			case cl.msg <- message{m.Topic(), bytes.Clone(m.Payload())}:
			default:
				t.Errorf("outside client %s: more than %d messages unread", id, cap(cl.msg))
			}
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("outside client %s: subscribe %s: %v", id, filter, tok.Error())
		}
	}
	return cl
}

// observerAndSensor dials the system's embedded broker twice: an observer
// subscribed to filter and a sensor that only publishes.
func (s *system) observerAndSensor(t *testing.T, filter string) (obs, sensor *client) {
	t.Helper()
	return dial(t, s.app.BrokerAddr(), "observer", filter), dial(t, s.app.BrokerAddr(), "sensor", "")
}

// publish sends payload and waits until it is written.
func (cl *client) publish(topic, payload string) {
	cl.t.Helper()
	tok := cl.c.Publish(topic, 0, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		cl.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message on topic, or fails the test after within.
// Messages on other topics are kept for later calls: the broker may deliver a
// prediction before the focus event that caused it (inline subscribers run
// before TCP clients are served), and a test must not lose either.
func (cl *client) next(topic string, within time.Duration) message {
	cl.t.Helper()
	for i, m := range cl.pending {
		if m.Topic == topic {
			cl.pending = append(cl.pending[:i], cl.pending[i+1:]...)
			return m
		}
	}
	deadline := time.After(within)
	for {
		select {
		case m := <-cl.msg:
			if m.Topic == topic {
				return m
			}
			cl.pending = append(cl.pending, m)
		case <-deadline:
			cl.t.Fatalf("no message on %s within %s", topic, within)
			return message{}
		}
	}
}

// predictionsFor waits until predictions, each in the seed's exact shape,
// have reached n different shoppers. Messages on other topics are kept in
// pending.
func (cl *client) predictionsFor(t *testing.T, n int, within time.Duration) {
	t.Helper()
	shoppers := map[string]bool{}
	deadline := time.After(within)
	for len(shoppers) < n {
		select {
		case m := <-cl.msg:
			if m.Topic != "customer/prediction" {
				cl.pending = append(cl.pending, m)
				continue
			}
			checkPredictionShape(t, m.Payload)
			var p struct{ Customer struct{ ID string } }
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				t.Fatal(err)
			}
			shoppers[p.Customer.ID] = true
		case <-deadline:
			t.Fatalf("predictions for %d shoppers within %s, want %d", len(shoppers), within, n)
		}
	}
}

// metric sums the values of the named metric over the series whose labels
// include every label given as "name=value".
func (s *system) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return metrictest.Sum(t, s.app.Registry(), name, labels...)
}

// waitMetric waits until the metric reaches at least want.
func (s *system) waitMetric(t *testing.T, want float64, within time.Duration, name string, labels ...string) {
	t.Helper()
	harness.Until(t, within, fmt.Sprintf("%s%v at least %v", name, labels, want), func() bool { return s.metric(t, name, labels...) >= want })
}

// script publishes one shopper's visit as sensors would: enter, moves one
// second apart through the given cells, exit.
type script struct {
	cl *client
	id string
	ts int64
}

func (s *script) enter() {
	s.cl.publish("customer/enter", fmt.Sprintf(`{"id":%q,"ts":%d}`, s.id, s.ts))
}

func (s *script) move(x, y int) {
	s.ts++
	s.cl.publish("customer/move", fmt.Sprintf(`{"id":%q,"ts":%d,"x":%d,"y":%d}`, s.id, s.ts, x, y))
}

func (s *script) stay(x, y int, seconds int) {
	for range seconds {
		s.move(x, y)
	}
}

// lingerInBoys enters, walks the front aisle of the default grid to Boys and
// stays there past the default 10 s dwell.
func (s *script) lingerInBoys() {
	s.enter()
	s.move(0, 0)
	s.move(1, 0)
	s.move(2, 0)
	s.move(3, 0)
	s.stay(3, 1, 12)
}

// shopper is the script of a customer of catalog's with a coupon for dep
// valid now, publishing through sensor.
func shopper(t *testing.T, catalog *system, sensor *client, dep store.Department) *script {
	t.Helper()
	now := time.Now().Unix()
	return &script{cl: sensor, id: customerWithCoupon(t, catalog, dep, now), ts: now}
}

// lingerInBoys has a customer of catalog's with a Boys coupon valid now
// linger in Boys through sensor, and returns the script to go on with.
func lingerInBoys(t *testing.T, catalog *system, sensor *client) *script {
	t.Helper()
	s := shopper(t, catalog, sensor, store.Boys)
	s.lingerInBoys()
	return s
}

func (s *script) exit() {
	s.ts++
	s.cl.publish("customer/exit", fmt.Sprintf(`{"id":%q,"ts":%d}`, s.id, s.ts))
}

// newApp builds the app from the test defaults (embedded broker and HTTP on
// free loopback ports, simulator off) with extra on top.
func newApp(ctx context.Context, t testing.TB, extra map[string]string) (*app.App, error) {
	t.Helper()
	environ := map[string]string{
		"BROKER_LISTEN_ADDR": "127.0.0.1:0",
		"HTTP_ADDR":          "127.0.0.1:0",
		"SIMULATOR_ENABLED":  "false",
		"LOG_LEVEL":          "warn",
		"MQTT_NAME":          "storeflow-e2e",
	}
	maps.Copy(environ, extra)
	cfg, err := config.Load(environ)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: cfg.LogLevel.Level}))
	return app.New(ctx, cfg, log)
}
