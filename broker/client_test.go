package broker

import (
	"bytes"
	"context"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Against a real mosquitto: what the client publishes comes back to its own
// subscription, and reaches outside clients byte for byte.
func TestClientPublishSubscribe(t *testing.T) {
	addr := mosquittotest.Start(t, "allow_anonymous true")
	c := runClient(t, externalConfig(t, "127.0.0.1", addr))
	got := make(chan message, 100)
	if err := c.Subscribe("customer/#", collect(got)); err != nil {
		t.Fatal(err)
	}
	phone := dialOutside(t, addr, "phone", "", "", "customer/prediction")

	buf := []byte(`{"customer":{"id":"1"}}`)
	want := bytes.Clone(buf)
	if err := c.Publish(context.Background(), "customer/prediction", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "overwritten by the caller") // Publish copies: the caller may reuse its buffer
	for _, ch := range []chan message{got, phone.msg} {
		if m := waitMessage(t, ch, 5*time.Second); m.Topic != "customer/prediction" || !bytes.Equal(m.Payload, want) {
			t.Fatalf("got %s %q, want customer/prediction %q", m.Topic, m.Payload, want)
		}
	}

	phone.publish("customer/move", []byte(`{"id":"2"}`))
	if m := waitMessage(t, got, 5*time.Second); m.Topic != "customer/move" || string(m.Payload) != `{"id":"2"}` {
		t.Fatalf("handler got %s %q, want the outside client's move", m.Topic, m.Payload)
	}
	if c.Addr() != "" {
		t.Errorf("Addr() = %q, want empty for an external broker", c.Addr())
	}
}

// With allow_anonymous false: the right password connects; a wrong one, or
// none, makes Dial fail at once with a message that says what to check and
// never shows the password.
func TestClientUsernamePassword(t *testing.T) {
	pw := mosquittotest.PasswordFile(t, "storeflow", "s3cret-pw", "phone", "phone-pw")
	addr := mosquittotest.Start(t, "allow_anonymous false\npassword_file "+pw)

	t.Run("right password", func(t *testing.T) {
		cfg := externalConfig(t, "127.0.0.1", addr)
		cfg.Username, cfg.Password = "storeflow", "s3cret-pw"
		c := runClient(t, cfg)
		got := make(chan message, 1)
		if err := c.Subscribe("customer/focus", collect(got)); err != nil {
			t.Fatal(err)
		}
		dialOutside(t, addr, "phone", "phone", "phone-pw", "").publish("customer/focus", []byte("x"))
		waitMessage(t, got, 5*time.Second)
	})

	tests := []struct {
		name, user, password string
	}{
		{"wrong password", "storeflow", "not-the-password"},
		{"another user's password", "storeflow", "phone-pw"},
		{"unknown user", "nobody", "s3cret-pw"},
		{"no credentials", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := externalConfig(t, "127.0.0.1", addr)
			cfg.Username, cfg.Password = tt.user, tt.password
			start := time.Now()
			c, err := Dial(context.Background(), cfg, testLog(t))
			took := time.Since(start)
			if err == nil {
				c.Run(canceled())
				t.Fatal("Dial succeeded, want the broker to refuse")
			}
			// Fail fast: one answer from the broker, not a retry loop until
			// the 10 s connect timeout.
			if took > 5*time.Second {
				t.Errorf("Dial took %s to fail", took)
			}
			msg := err.Error()
			for _, want := range []string{"tcp://" + addr, "not Authorized", "MQTT_USERNAME", "MQTT_PASSWORD"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if tt.password != "" && strings.Contains(msg, tt.password) {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
}

// MQTT_HOST lists brokers in order: a first one that refuses connections is
// skipped. A list where every broker refuses is an error at Dial.
func TestClientFailsOverToTheNextHost(t *testing.T) {
	addr := mosquittotest.Start(t, "allow_anonymous true")
	refused := closedAddr(t)

	t.Run("second host", func(t *testing.T) {
		// The first entry has its own (closed) port; the bare second one gets
		// MQTT_PORT, mosquitto's.
		c := runClient(t, externalConfig(t, refused+",127.0.0.1", addr))
		got := make(chan message, 1)
		if err := c.Subscribe("customer/exit", collect(got)); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(context.Background(), "customer/exit", []byte("bye")); err != nil {
			t.Fatal(err)
		}
		waitMessage(t, got, 5*time.Second)
	})

	t.Run("no host answers", func(t *testing.T) {
		start := time.Now()
		c, err := Dial(context.Background(), externalConfig(t, refused, refused), testLog(t))
		if err == nil {
			c.Run(canceled())
			t.Fatal("Dial to a closed port succeeded")
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Dial took %s to fail on a refused connection", took)
		}
		if !strings.Contains(err.Error(), "tcp://"+refused) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("error %q does not name the broker and the refusal", err)
		}
	})
}

// After the broker restarts (a new, empty mosquitto on the same port), the
// client reconnects on its own and renews its subscriptions.
func TestClientRenewsSubscriptionsAfterBrokerRestart(t *testing.T) {
	m := mosquittotest.New(t, "allow_anonymous true")
	c := runClient(t, externalConfig(t, "127.0.0.1", m.Addr()))
	got := make(chan message, 1000)
	if err := c.Subscribe("customer/#", collect(got)); err != nil {
		t.Fatal(err)
	}
	dialOutside(t, m.Addr(), "sensor-before", "", "", "").publish("customer/enter", []byte("before"))
	if msg := waitMessage(t, got, 5*time.Second); string(msg.Payload) != "before" {
		t.Fatalf("before the restart: got %q", msg.Payload)
	}

	m.Restart()
	start := time.Now()
	sensor := dialOutside(t, m.Addr(), "sensor-after", "", "", "customer/prediction")
	// The new broker knows no subscription until the client has reconnected
	// (paho backs off up to MQTT's 10 s max reconnect interval) and renewed
	// it; until then what the sensor publishes is dropped. Publish again
	// until one arrives.
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for received := false; !received; {
		sensor.publish("customer/enter", []byte("after"))
		select {
		case msg := <-got:
			if string(msg.Payload) != "after" {
				t.Fatalf("after the restart: got %q", msg.Payload)
			}
			received = true
		case <-tick.C:
		case <-deadline:
			t.Fatal("no message through the renewed subscription within 30s of the restart")
		}
	}
	t.Logf("subscription renewed %s after the restart", time.Since(start).Round(time.Millisecond))

	// Publishing works again too.
	if err := c.Publish(context.Background(), "customer/prediction", []byte("coupon")); err != nil {
		t.Fatal(err)
	}
	if msg := waitMessage(t, sensor.msg, 5*time.Second); string(msg.Payload) != "coupon" {
		t.Fatalf("outside client got %q after the restart", msg.Payload)
	}
}

// externalConfig points a client at hosts (MQTT_HOST) with MQTT_PORT taken
// from addr, under a client id of its own per test.
func externalConfig(t *testing.T, hosts, addr string) Config {
	t.Helper()
	port, _ := strconv.Atoi(portOf(t, addr))
	return Config{Host: hosts, Port: port, Name: "storeflow-" + strings.ReplaceAll(t.Name(), "/", "-")}
}

// runClient dials the external broker, runs the client until the test ends
// and returns once it is connected.
func runClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg, testLog(t))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("client did not stop within 10s")
		}
	})
	waitReady(t, c.Ready(), done)
	return c
}

// collect is a handler that hands a copy of each message to ch; it never
// blocks paho's router (tests wait for a message, not for all of them).
func collect(ch chan<- message) Handler {
	return func(topic string, payload []byte) {
		select {
		case ch <- message{topic, bytes.Clone(payload)}:
		default:
		}
	}
}

// canceled is a done context, to make Run return at once.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// closedAddr returns a loopback address where nothing listens: connections
// are refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	return mosquittotest.FreeAddr(t)
}

// portOf returns the port of a host:port address as a string.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatalf("port of %s: %v", addr, err)
	}
	return port
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
