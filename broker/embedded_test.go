package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// A TCP client publishes to an inline subscriber, and Embedded.Publish
// reaches a TCP subscriber byte for byte, even when the caller reuses its
// buffer as soon as Publish returns.
func TestEmbeddedInlineAndTCPClientsExchangeMessages(t *testing.T) {
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
	inline := make(chan message, 100)
	if err := b.Subscribe("in/#", func(topic string, payload []byte) {
		inline <- message{topic, bytes.Clone(payload)} // payload is only valid during the call
	}); err != nil {
		t.Fatal(err)
	}
	phone := dialOutside(t, b.Addr(), "phone", "", "", "out/#")

	// Outside → inline. Binary payload: no text assumptions on the way.
	sent := []byte{0, 1, 2, 0xff, '{', '}', 0x80}
	phone.publish("in/sensor", sent)
	if got := waitMessage(t, inline, 5*time.Second); got.Topic != "in/sensor" || !bytes.Equal(got.Payload, sent) {
		t.Fatalf("inline handler got %s %v, want in/sensor %v", got.Topic, got.Payload, sent)
	}

	// Inline → outside, with one buffer overwritten right after each Publish.
	// Without the copy in Publish, mochi's writer for the TCP client reads the
	// buffer after Publish has returned: wrong payloads, and a race under -race.
	const n = 200
	buf := make([]byte, 64)
	for i := range n {
		copy(buf, fmt.Sprintf("coupon %03d %s", i, strings.Repeat("x", 64)))
		if err := b.Publish(context.Background(), "out/prediction", buf); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		for j := range buf {
			buf[j] = '!'
		}
	}
	for i := range n {
		got := waitMessage(t, phone.msg, 5*time.Second)
		want := fmt.Sprintf("coupon %03d %s", i, strings.Repeat("x", 64))[:64]
		if got.Topic != "out/prediction" || string(got.Payload) != want {
			t.Fatalf("message %d: %s %q, want out/prediction %q", i, got.Topic, got.Payload, want)
		}
	}
}

func TestEmbeddedListensOnARealPort(t *testing.T) {
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil {
		t.Fatalf("Addr() = %q: %v", b.Addr(), err)
	}
	if host != "127.0.0.1" || port == "0" || port == "" {
		t.Fatalf("Addr() = %q, want 127.0.0.1 and the port the kernel chose", b.Addr())
	}
	c, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", b.Addr(), err)
	}
	c.Close()
}

func TestEmbeddedBusyPortIsAnError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := NewEmbedded(Config{ListenAddr: l.Addr().String(), Name: "test"}, testLog(t))
	if err == nil {
		// Run and stop it, so its goroutines and listener do not outlive the test.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = b.Run(ctx)
		t.Fatalf("NewEmbedded on busy %s: no error", l.Addr())
	}
	for _, want := range []string{"BROKER_LISTEN_ADDR", l.Addr().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestEmbeddedRunStopsOnCancelAndPublishThenFails(t *testing.T) {
	b, err := NewEmbedded(Config{ListenAddr: "127.0.0.1:0", Name: "test"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	waitReady(t, b.Ready(), done)
	if err := b.Publish(context.Background(), "out/x", []byte("before")); err != nil {
		t.Fatalf("publish while running: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if err := b.Publish(context.Background(), "out/x", []byte("after")); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after Run stopped = %v, want ErrClosed", err)
	}
	if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("listener %s still accepts connections after Run stopped", b.Addr())
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Port: 1883, Name: "demoClient"}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{"defaults embed a broker", ok, nil},
		{"embedded on any address", with(func(c *Config) { c.ListenAddr = "0.0.0.0:0" }), nil},
		{"embedded on an empty host", with(func(c *Config) { c.ListenAddr = ":1883" }), nil},
		{"listen address without a port", with(func(c *Config) { c.ListenAddr = "127.0.0.1" }), []string{"BROKER_LISTEN_ADDR", `"127.0.0.1"`}},
		{"port 0", with(func(c *Config) { c.Port = 0 }), []string{"MQTT_PORT=0"}},
		{"port too big", with(func(c *Config) { c.Port = 65536 }), []string{"MQTT_PORT=65536"}},
		{"qos 3", with(func(c *Config) { c.QoS = 3 }), []string{"MQTT_QOS=3"}},
		{"qos 2", with(func(c *Config) { c.QoS = 2 }), nil},
		{"no client name", with(func(c *Config) { c.Name = "" }), []string{"MQTT_NAME"}},
		{"every error at once", Config{Port: -1, QoS: 9, ListenAddr: "nope"}, []string{"MQTT_PORT=-1", "MQTT_QOS=9", "MQTT_NAME", "BROKER_LISTEN_ADDR"}},
		{"one external host", with(func(c *Config) { c.Host = "broker.example.com" }), nil},
		{"hosts, ports, schemes and spaces", with(func(c *Config) { c.Host = " a , b:1884,ssl://c:8883 , tcp://[::1]:1 " }), nil},
		{"external ignores the listen address", with(func(c *Config) { c.Host = "a"; c.ListenAddr = "nope" }), nil},
		{"empty entry in the middle", with(func(c *Config) { c.Host = "a,,b" }), []string{`MQTT_HOST="a,,b"`, "empty host"}},
		{"trailing comma", with(func(c *Config) { c.Host = "a," }), []string{"MQTT_HOST", "empty host"}},
		{"only blanks", with(func(c *Config) { c.Host = "  " }), []string{"MQTT_HOST", "empty host"}},
		{"blank entry", with(func(c *Config) { c.Host = "a, ,b" }), []string{"MQTT_HOST", "empty host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigListen(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"default port", Config{Port: 1883}, "127.0.0.1:1883"},
		{"MQTT_PORT", Config{Port: 2883}, "127.0.0.1:2883"},
		{"BROKER_LISTEN_ADDR wins", Config{Port: 2883, ListenAddr: "0.0.0.0:1884"}, "0.0.0.0:1884"},
		{"free port", Config{Port: 1883, ListenAddr: "127.0.0.1:0"}, "127.0.0.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Listen(); got != tt.want {
				t.Fatalf("Listen() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBrokerURLs(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		port    int
		cert    string
		want    []string
		wantErr string
	}{
		{"bare host gets MQTT_PORT", "broker.example.com", 1883, "", []string{"tcp://broker.example.com:1883"}, ""},
		{"host with a port", "10.0.0.1:1884", 1883, "", []string{"tcp://10.0.0.1:1884"}, ""},
		{"list in order, spaces trimmed", " a , b:1884,c ", 2883, "", []string{"tcp://a:2883", "tcp://b:1884", "tcp://c:2883"}, ""},
		{"URLs go through", "tcp://a:1883,ssl://b:8883,ws://c:8080/mqtt", 1, "", []string{"tcp://a:1883", "ssl://b:8883", "ws://c:8080/mqtt"}, ""},
		{"URL without a port gets MQTT_PORT", "ssl://b,tcp://c", 8883, "", []string{"ssl://b:8883", "tcp://c:8883"}, ""},
		{"websocket URL keeps its default port", "ws://c/mqtt", 8883, "", []string{"ws://c/mqtt"}, ""},
		{"IPv6 bare", "::1", 1883, "", []string{"tcp://[::1]:1883"}, ""},
		{"IPv6 with a port", "[::1]:1884", 1883, "", []string{"tcp://[::1]:1884"}, ""},
		{"CA file: ssl for bare hosts", "a,b:8884", 8883, "/etc/ca.pem", []string{"ssl://a:8883", "ssl://b:8884"}, ""},
		{"CA file: an explicit scheme wins", "tcp://a:1883", 8883, "/etc/ca.pem", []string{"tcp://a:1883"}, ""},
		{"empty", "", 1883, "", nil, "MQTT_HOST"},
		{"empty entry", "a,,b", 1883, "", nil, `MQTT_HOST="a,,b"`},
		{"trailing comma", "a,", 1883, "", nil, "empty host"},
		{"blank entry", "a,  ,b", 1883, "", nil, "empty host"},
		{"broken URL", "tcp://a b:1", 1883, "", nil, "MQTT_HOST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BrokerURLs(Config{Host: tt.host, Port: tt.port, BrokerCertFile: tt.cert})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("BrokerURLs(%q) = %v, %v; want an error containing %q", tt.host, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("BrokerURLs(%q) = %q, %v; want %q", tt.host, got, err, tt.want)
			}
		})
	}
}

// runEmbedded starts an embedded broker and returns once it serves. It is
// stopped, and Run's result checked, when the test ends.
func runEmbedded(t *testing.T, cfg Config) *Embedded {
	t.Helper()
	b, err := NewEmbedded(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("embedded broker did not stop within 10s")
		}
	})
	waitReady(t, b.Ready(), done)
	return b
}

func waitReady(t *testing.T, ready <-chan struct{}, done <-chan error) {
	t.Helper()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("stopped before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
}

// testLog is a logger whose output is shown when the test fails. It keeps
// writing to a buffer, not to t, so a late line from a broker goroutine
// cannot write to a finished test.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	buf := new(syncBuffer)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// message is one MQTT message, its payload copied.
type message struct {
	Topic   string
	Payload []byte
}

func waitMessage(t *testing.T, ch <-chan message, within time.Duration) message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
		return message{}
	}
}

// outside is an MQTT client over TCP, like a phone or a sensor.
type outside struct {
	t   *testing.T
	c   paho.Client
	msg chan message
}

// dialOutside connects an outside client to addr and, when filter is not
// empty, subscribes before returning, so nothing published afterwards is
// missed.
func dialOutside(t *testing.T, addr, id, user, password, filter string) *outside {
	t.Helper()
	o := &outside{t: t, msg: make(chan message, 10000)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(password).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetOrderMatters(true)
	o.c = paho.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("outside client %s: connect to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	if filter != "" {
		tok := o.c.Subscribe(filter, 0, func(_ paho.Client, m paho.Message) {
			select {
			case o.msg <- message{m.Topic(), bytes.Clone(m.Payload())}:
			default:
				t.Errorf("outside client %s: more than %d messages unread", id, cap(o.msg))
			}
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("outside client %s: subscribe %s: %v", id, filter, tok.Error())
		}
	}
	return o
}

// publish sends payload at QoS 0 and waits until it is written.
func (o *outside) publish(topic string, payload []byte) {
	o.t.Helper()
	tok := o.c.Publish(topic, 0, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		o.t.Fatalf("outside publish %s: %v", topic, tok.Error())
	}
}
