package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/metrictest"
	"github.com/storeflow/storeflow/internal/proctest"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/certtest"
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
	// An MQTT client rather than a bare TCP dial: mochi v2.7.9's Close races
	// (sync.WaitGroup Add against Wait) with a connection it accepted but has
	// not yet read a CONNECT from, and -race reports it.
	dialOutside(t, b.Addr(), "phone", "", "", "")
}

func TestEmbeddedBusyPortIsAnError(t *testing.T) {
	l := listenLoopback(t)
	b, err := NewEmbedded(Config{ListenAddr: l.Addr().String(), Name: "test"}, testLog(t), EmbeddedOptions{})
	if err == nil {
		// Run and stop it, so its goroutines and listener do not outlive the test.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = b.Run(ctx)
		t.Fatalf("NewEmbedded on busy %s: no error", l.Addr())
	}
	errorNames(t, err, "BROKER_LISTEN_ADDR", l.Addr().String())
}

func TestEmbeddedRunStopsOnCancelAndPublishThenFails(t *testing.T) {
	b, err := NewEmbedded(Config{ListenAddr: "127.0.0.1:0", Name: "test"}, testLog(t), EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "embedded broker", b.Run, b.Ready())
	if err := b.Publish(context.Background(), "out/x", []byte("before")); err != nil {
		t.Fatalf("publish while running: %v", err)
	}
	stop(10 * time.Second)
	if t.Failed() {
		t.FailNow()
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
		{"TLS listener", with(func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.TLSListenAddr = "c.pem", "k.pem", "127.0.0.1:8883" }), nil},
		{"certificate without key", with(func(c *Config) { c.TLSCertFile = "c.pem" }), []string{"BROKER_TLS_KEY_FILE is empty"}},
		{"key without certificate", with(func(c *Config) { c.TLSKeyFile = "k.pem" }), []string{"BROKER_TLS_CERT_FILE is empty"}},
		{"client CA without TLS", with(func(c *Config) { c.TLSClientCAFile = "ca.pem" }), []string{"BROKER_TLS_CLIENT_CA_FILE", "BROKER_TLS_CERT_FILE is empty"}},
		{"TLS address without a port", with(func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.TLSListenAddr = "c.pem", "k.pem", "x" }), []string{`BROKER_TLS_LISTEN_ADDR="x"`}},
		{"TLS address unused when TLS is off", with(func(c *Config) { c.TLSListenAddr = "x" }), nil},
		{"WebSocket listener", with(func(c *Config) { c.WSListenAddr = "127.0.0.1:8080" }), nil},
		{"WebSocket address without a port", with(func(c *Config) { c.WSListenAddr = "ws" }), []string{`BROKER_WS_LISTEN_ADDR="ws"`}},
		{"external ignores BROKER_*", with(func(c *Config) { c.Host = "a"; c.TLSCertFile = "c.pem"; c.WSListenAddr = "x" }), nil},
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
			errorNames(t, err, tt.want...)
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

// A bad MQTT_HOST is named in the error, its credentials never: not even a
// piece of a password that the URL parser would quote.
func TestBrokerURLErrorsHideCredentials(t *testing.T) {
	for _, host := range []string{"tcp://u:qz/ss@b:x", "tcp://u:s3cret@a,,b", "tcp://u:s3cret@a b:1"} {
		_, err := BrokerURLs(Config{Host: host, Port: 1883})
		if err == nil || !strings.Contains(err.Error(), "MQTT_HOST") {
			t.Fatalf("BrokerURLs(%q) = %v, want an error naming MQTT_HOST", host, err)
		}
		for _, secret := range []string{"qz", "s3cret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("BrokerURLs(%q): error %q shows %q", host, err, secret)
			}
		}
	}
}

// runEmbedded starts an embedded broker and returns once it serves. It is
// stopped, and Run's result checked, when the test ends.
func runEmbedded(t *testing.T, cfg Config) *Embedded {
	t.Helper()
	b, stop := startEmbedded(t, cfg)
	t.Cleanup(func() { stop(10 * time.Second) })
	return b
}

// startEmbedded runs a broker until stop, which fails the test unless Run
// returns nil within the given time.
func startEmbedded(t *testing.T, cfg Config) (b *Embedded, stop func(within time.Duration)) {
	t.Helper()
	b, err := NewEmbedded(cfg, testLog(t), EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b, harness.Start(t, "embedded broker", b.Run, b.Ready())
}

// listenLoopback listens on a free loopback port, so that the port is busy
// until the end of the test.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// errorNames reports each of want that the (non-nil) err does not contain.
func errorNames(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

// testLog is a logger whose output is shown when the test fails. It keeps
// writing to a buffer, not to t, so a late line from a broker goroutine
// cannot write to a finished test.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	buf := new(proctest.SyncBuffer)
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
	id  string
	c   paho.Client
	msg chan message
}

// dialOutside connects an outside client to addr and, when filter is not
// empty, subscribes before returning, so nothing published afterwards is
// missed.
func dialOutside(t *testing.T, addr, id, user, password, filter string) *outside {
	t.Helper()
	o, err := connectOutside(t, "tcp://"+addr, id, func(opts *paho.ClientOptions) {
		opts.SetUsername(user).SetPassword(password)
	})
	if err != nil {
		t.Fatalf("outside client %s: connect to %s: %v", id, addr, err)
	}
	if filter != "" {
		o.mustSubscribe(filter)
	}
	return o
}

// connectOutside connects an outside client to url (tcp://, ssl://, ws://),
// set up by configure, and returns the broker's refusal as an error.
func connectOutside(t *testing.T, url, id string, configure func(*paho.ClientOptions)) (*outside, error) {
	t.Helper()
	o := &outside{t: t, id: id, msg: make(chan message, 10000)}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true)
	if configure != nil {
		configure(opts)
	}
	o.c = paho.NewClient(opts)
	tok := o.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("no CONNACK within 10s")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	return o, nil
}

// subscribe subscribes at qos and returns the SUBACK code: the granted QoS,
// or 0x80 refused.
func (o *outside) subscribe(filter string, qos byte) byte {
	o.t.Helper()
	tok := o.c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		select {
		case o.msg <- message{m.Topic(), bytes.Clone(m.Payload())}:
		default:
			o.t.Errorf("outside client %s: more than %d messages unread", o.id, cap(o.msg))
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		o.t.Fatalf("outside client %s: subscribe %s: %v", o.id, filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// mustSubscribe subscribes and stops the test if the broker refuses.
func (o *outside) mustSubscribe(filter string) {
	o.t.Helper()
	if code := o.subscribe(filter, 0); code != 0 {
		o.t.Fatalf("outside client %s: subscribe %s: refused with code %#x", o.id, filter, code)
	}
}

// subscribeRefused subscribes and reports an error unless the broker
// refuses (SUBACK 0x80).
func (o *outside) subscribeRefused(filter string) {
	o.t.Helper()
	if code := o.subscribe(filter, 0); code != 0x80 {
		o.t.Errorf("outside client %s: subscribe %s = %#x, want 0x80 (refused)", o.id, filter, code)
	}
}

// publish sends payload at QoS 0 and waits until it is written.
func (o *outside) publish(topic string, payload []byte) {
	o.t.Helper()
	tok := o.c.Publish(topic, 0, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		o.t.Fatalf("outside publish %s: %v", topic, tok.Error())
	}
}

// Outside subscribers get storeflow's publishes at the QoS they subscribed
// with, up to MQTT_QOS. (Before, the inline client published at QoS 0 and a
// QoS 1 phone got QoS 0: nothing kept for it while it was away.)
func TestEmbeddedDeliversAtTheSubscribersQoS(t *testing.T) {
	for _, tc := range []struct {
		name         string
		mqttQoS, sub byte
		want         byte
	}{
		{"QoS 1 subscriber", 1, 1, 1},
		{"QoS 0 subscriber", 1, 0, 0},
		{"QoS 2 subscriber, MQTT_QOS=1", 1, 2, 1},
		{"QoS 2 subscriber, MQTT_QOS=2", 2, 2, 2},
		{"QoS 1 subscriber, MQTT_QOS=0", 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test", QoS: tc.mqttQoS})
			o, err := connectOutside(t, "tcp://"+b.Addr(), "phone", nil)
			if err != nil {
				t.Fatal(err)
			}
			qos := make(chan byte, 1)
			tok := o.c.Subscribe("out/x", tc.sub, func(_ paho.Client, m paho.Message) { qos <- m.Qos() })
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			if err := b.Publish(context.Background(), "out/x", []byte("p")); err != nil {
				t.Fatal(err)
			}
			select {
			case q := <-qos:
				if q != tc.want {
					t.Fatalf("message arrived at QoS %d, want %d", q, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no message within 5s")
			}
		})
	}
}

// trusting returns paho options for TLS with ca as the only root, and the
// client certificate when pair is not nil.
func trusting(t *testing.T, caFile string, pair *certtest.Pair) func(*paho.ClientOptions) {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool}
	if pair != nil {
		cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return func(o *paho.ClientOptions) { o.SetTLSConfig(conf) }
}

func TestEmbeddedTLSListener(t *testing.T) {
	ca := certtest.NewCA(t, "storeflow")
	server := ca.Server("broker")
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test",
		TLSListenAddr: "127.0.0.1:0", TLSCertFile: server.CertFile, TLSKeyFile: server.KeyFile})
	if b.TLSAddr() == "" || strings.HasSuffix(b.TLSAddr(), ":0") || b.TLSAddr() == b.Addr() {
		t.Fatalf("TLSAddr() = %q (Addr %q), want its own real port", b.TLSAddr(), b.Addr())
	}
	if b.WSAddr() != "" {
		t.Errorf("WSAddr() = %q without BROKER_WS_LISTEN_ADDR, want empty", b.WSAddr())
	}
	url := "ssl://" + b.TLSAddr()

	phone, err := connectOutside(t, url, "phone", trusting(t, ca.CertFile, nil))
	if err != nil {
		t.Fatalf("client trusting the broker's CA: %v", err)
	}
	phone.mustSubscribe("out/#")
	if err := b.Publish(context.Background(), "out/prediction", []byte("coupon")); err != nil {
		t.Fatal(err)
	}
	if got := waitMessage(t, phone.msg, 5*time.Second); got.Topic != "out/prediction" || string(got.Payload) != "coupon" {
		t.Fatalf("got %s %q", got.Topic, got.Payload)
	}

	other := certtest.NewCA(t, "other")
	if _, err := connectOutside(t, url, "stranger", trusting(t, other.CertFile, nil)); err == nil {
		t.Error("a client trusting another CA connected")
	}
	if _, err := connectOutside(t, url, "old", func(o *paho.ClientOptions) {
		trusting(t, ca.CertFile, nil)(o)
		o.TLSConfig.MaxVersion = tls.VersionTLS11
	}); err == nil {
		t.Error("a TLS 1.1 client connected")
	}
}

// authFile writes the users and ACLs the tests share: simulator and phone
// log in with passwords; shelf-camera only has a client certificate. Each
// may use test/barrier, so a test can tell "nothing arrived" from "not yet".
func authFile(t *testing.T) string {
	t.Helper()
	return writeFile(t, "auth", strings.Join([]string{
		"user simulator " + testHash(t, "sim-pw"),
		"user phone " + testHash(t, "phone-pw"),
		"acl simulator write customer/enter",
		"acl simulator write customer/move",
		"acl simulator write customer/exit",
		"acl phone read customer/prediction",
		"acl shelf-camera readwrite shelf/#",
		"acl * readwrite test/barrier",
	}, "\n"))
}

// inlineCollector subscribes the inline client to filter.
func inlineCollector(t *testing.T, b *Embedded, filter string) chan message {
	t.Helper()
	ch := make(chan message, 100)
	if err := b.Subscribe(filter, func(topic string, payload []byte) {
		ch <- message{topic, bytes.Clone(payload)}
	}); err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestEmbeddedAuthFile(t *testing.T) {
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test", AuthFile: authFile(t)})
	url := "tcp://" + b.Addr()
	login := func(user, pw string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword(pw) }
	}
	refused := []struct{ name, user, pw string }{
		{"wrong password", "phone", "sim-pw"},
		{"empty password", "phone", ""},
		{"unknown user", "mallory", "phone-pw"},
		{"anonymous", "", ""},
		{"certificate user without a certificate", "shelf-camera", ""},
	}
	for _, r := range refused {
		if _, err := connectOutside(t, url, "c-"+r.name, login(r.user, r.pw)); err == nil {
			t.Errorf("%s: connected, want refused", r.name)
		}
	}

	inline := inlineCollector(t, b, "#")
	phone, err := connectOutside(t, url, "phone", login("phone", "phone-pw"))
	if err != nil {
		t.Fatalf("phone with its password: %v", err)
	}
	sim, err := connectOutside(t, url, "simulator", login("simulator", "sim-pw"))
	if err != nil {
		t.Fatalf("simulator with its password: %v", err)
	}

	// The phone reads predictions; its publish to customer/focus is dropped.
	phone.mustSubscribe("customer/prediction")
	phone.subscribeRefused("customer/#") // beyond its ACL
	if err := b.Publish(context.Background(), "customer/prediction", []byte("coupon")); err != nil {
		t.Fatal(err)
	}
	if got := waitMessage(t, phone.msg, 5*time.Second); got.Topic != "customer/prediction" {
		t.Fatalf("phone got %s, want customer/prediction", got.Topic)
	}
	waitMessage(t, inline, 5*time.Second) // the inline copy of the prediction
	phone.publish("customer/focus", []byte("forged"))
	phone.publish("test/barrier", []byte("phone"))
	if got := waitMessage(t, inline, 5*time.Second); got.Topic != "test/barrier" {
		t.Fatalf("inline subscriber got %s %q from the phone, want only test/barrier", got.Topic, got.Payload)
	}

	// The simulator writes moves but cannot read predictions.
	sim.publish("customer/move", []byte("move"))
	if got := waitMessage(t, inline, 5*time.Second); got.Topic != "customer/move" {
		t.Fatalf("inline subscriber got %s, want customer/move", got.Topic)
	}
	sim.subscribeRefused("customer/prediction")
	sim.mustSubscribe("test/barrier")
	if err := b.Publish(context.Background(), "customer/prediction", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), "test/barrier", []byte("end")); err != nil {
		t.Fatal(err)
	}
	if got := waitMessage(t, sim.msg, 5*time.Second); got.Topic != "test/barrier" {
		t.Fatalf("simulator received %s %q, want only test/barrier", got.Topic, got.Payload)
	}
}

func TestEmbeddedClientCertificates(t *testing.T) {
	ca := certtest.NewCA(t, "storeflow")
	server := ca.Server("broker")
	camera := ca.Client("shelf-camera")
	stranger := certtest.NewCA(t, "other").Client("shelf-camera")
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test", AuthFile: authFile(t),
		TLSListenAddr: "127.0.0.1:0", TLSCertFile: server.CertFile, TLSKeyFile: server.KeyFile, TLSClientCAFile: ca.CertFile})
	url := "ssl://" + b.TLSAddr()

	if _, err := connectOutside(t, url, "no-cert", trusting(t, ca.CertFile, nil)); err == nil {
		t.Error("a client without a certificate connected")
	}
	if _, err := connectOutside(t, url, "no-cert-pw", func(o *paho.ClientOptions) {
		trusting(t, ca.CertFile, nil)(o)
		o.SetUsername("phone").SetPassword("phone-pw")
	}); err == nil {
		t.Error("a client without a certificate connected with a password")
	}
	if _, err := connectOutside(t, url, "forged", trusting(t, ca.CertFile, &stranger)); err == nil {
		t.Error("a client with a certificate from another CA connected")
	}

	// The user name the client sends is ignored: the certificate names it.
	cam, err := connectOutside(t, url, "camera", func(o *paho.ClientOptions) {
		trusting(t, ca.CertFile, &camera)(o)
		o.SetUsername("phone")
	})
	if err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	cam.subscribeRefused("customer/prediction") // that is the phone's right
	cam.mustSubscribe("shelf/#")
	inline := inlineCollector(t, b, "shelf/#")
	cam.publish("shelf/3/photo", []byte("jpeg"))
	if got := waitMessage(t, inline, 5*time.Second); got.Topic != "shelf/3/photo" {
		t.Fatalf("inline got %s, want shelf/3/photo", got.Topic)
	}
	if got := waitMessage(t, cam.msg, 5*time.Second); got.Topic != "shelf/3/photo" {
		t.Fatalf("camera got %s, want its own shelf/3/photo", got.Topic)
	}
}

func TestEmbeddedWebSocket(t *testing.T) {
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test", AuthFile: authFile(t), WSListenAddr: "127.0.0.1:0"})
	if b.WSAddr() == "" || strings.HasSuffix(b.WSAddr(), ":0") {
		t.Fatalf("WSAddr() = %q, want a real port", b.WSAddr())
	}
	url := "ws://" + b.WSAddr() + "/mqtt"
	if _, err := connectOutside(t, url, "anonymous", nil); err == nil {
		t.Error("anonymous WebSocket client connected despite BROKER_AUTH_FILE")
	}
	phone, err := connectOutside(t, url, "phone", func(o *paho.ClientOptions) { o.SetUsername("phone").SetPassword("phone-pw") })
	if err != nil {
		t.Fatalf("WebSocket client: %v", err)
	}
	phone.mustSubscribe("customer/prediction")
	big := bytes.Repeat([]byte("c"), 100_000) // more than one read's worth
	for _, p := range [][]byte{[]byte("coupon"), big} {
		if err := b.Publish(context.Background(), "customer/prediction", p); err != nil {
			t.Fatal(err)
		}
		if got := waitMessage(t, phone.msg, 5*time.Second); !bytes.Equal(got.Payload, p) {
			t.Fatalf("WebSocket client got %d bytes, want %d", len(got.Payload), len(p))
		}
	}
}

// A listener reachable from the network needs users or an explicit yes to
// anonymous clients; one that requires client certificates admits no
// anonymous client.
func TestEmbeddedAnonymousOnlyOnLoopback(t *testing.T) {
	ca := certtest.NewCA(t, "storeflow")
	server := ca.Server("broker")
	withTLS := func(c Config) Config {
		c.TLSListenAddr, c.TLSCertFile, c.TLSKeyFile = "0.0.0.0:0", server.CertFile, server.KeyFile
		return c
	}
	local := Config{ListenAddr: "127.0.0.1:0", Name: "test"}
	open := Config{ListenAddr: "0.0.0.0:0", Name: "test"}
	tests := []struct {
		name string
		cfg  Config
		want string // error substring; empty: ok
	}{
		{"loopback", local, ""},
		{"network", open, "BROKER_LISTEN_ADDR=0.0.0.0:0 accepts clients from the network: set BROKER_AUTH_FILE, or BROKER_ALLOW_ANONYMOUS=true to allow anonymous clients"},
		{"all interfaces by empty host", Config{ListenAddr: ":0", Name: "test"}, "BROKER_LISTEN_ADDR=:0 accepts clients"},
		{"network, anonymous allowed", Config{ListenAddr: "0.0.0.0:0", Name: "test", AllowAnonymous: true}, ""},
		{"network with users", Config{ListenAddr: "0.0.0.0:0", Name: "test", AuthFile: authFile(t)}, ""},
		{"WebSocket on the network", Config{ListenAddr: "127.0.0.1:0", Name: "test", WSListenAddr: "0.0.0.0:0"}, "BROKER_WS_LISTEN_ADDR=0.0.0.0:0 accepts clients"},
		{"TLS on the network", withTLS(local), "BROKER_TLS_LISTEN_ADDR=0.0.0.0:0 accepts clients"},
		{"TLS with client certificates on the network", func() Config { c := withTLS(local); c.TLSClientCAFile = ca.CertFile; return c }(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewEmbedded(tt.cfg, testLog(t), EmbeddedOptions{})
			if err == nil {
				defer b.Close()
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewEmbedded: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewEmbedded = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestEmbeddedBadFilesNameTheVariable(t *testing.T) {
	ca := certtest.NewCA(t, "storeflow")
	server := ca.Server("broker")
	other := ca.Server("other")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := writeFile(t, "ca.pem", "not a certificate")
	badAuth := writeFile(t, "auth", "user phone "+testHash(t, "pw")+"\nacl phone peek x\n")
	tlsCfg := func(cert, key, clientCA string) Config {
		return Config{ListenAddr: "127.0.0.1:0", Name: "test", TLSListenAddr: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key, TLSClientCAFile: clientCA}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"certificate missing", tlsCfg(missing, server.KeyFile, ""), []string{"BROKER_TLS_CERT_FILE", "missing.pem"}},
		{"key missing", tlsCfg(server.CertFile, missing, ""), []string{"BROKER_TLS_KEY_FILE", "missing.pem"}},
		{"key of another certificate", tlsCfg(server.CertFile, other.KeyFile, ""), []string{"BROKER_TLS_CERT_FILE", "BROKER_TLS_KEY_FILE"}},
		{"certificate without key", tlsCfg(server.CertFile, "", ""), []string{"BROKER_TLS_CERT_FILE", "BROKER_TLS_KEY_FILE"}},
		{"client CA missing", tlsCfg(server.CertFile, server.KeyFile, missing), []string{"BROKER_TLS_CLIENT_CA_FILE", "missing.pem"}},
		{"client CA not PEM", tlsCfg(server.CertFile, server.KeyFile, notPEM), []string{"BROKER_TLS_CLIENT_CA_FILE", "no PEM certificate"}},
		{"client CA without TLS", tlsCfg("", "", ca.CertFile), []string{"BROKER_TLS_CLIENT_CA_FILE"}},
		{"auth file missing", Config{ListenAddr: "127.0.0.1:0", Name: "test", AuthFile: missing}, []string{"BROKER_AUTH_FILE", "missing.pem"}},
		{"auth file line", Config{ListenAddr: "127.0.0.1:0", Name: "test", AuthFile: badAuth}, []string{"BROKER_AUTH_FILE", badAuth + ":2:", `"peek"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewEmbedded(tt.cfg, testLog(t), EmbeddedOptions{})
			if err == nil {
				b.Close()
				t.Fatalf("NewEmbedded: no error, want one naming %v", tt.want)
			}
			errorNames(t, err, tt.want...)
		})
	}
}

// A busy TLS or WebSocket port is an error from NewEmbedded naming the
// variable, and the listeners bound before it are released.
func TestEmbeddedBusyTLSAndWebSocketPorts(t *testing.T) {
	ca := certtest.NewCA(t, "storeflow")
	server := ca.Server("broker")
	l := listenLoopback(t)
	freeAddr := proctest.FreeAddr(t)
	for _, tt := range []struct {
		env string
		cfg Config
	}{
		{"BROKER_TLS_LISTEN_ADDR", Config{ListenAddr: freeAddr, Name: "test", TLSListenAddr: l.Addr().String(), TLSCertFile: server.CertFile, TLSKeyFile: server.KeyFile}},
		{"BROKER_WS_LISTEN_ADDR", Config{ListenAddr: freeAddr, Name: "test", WSListenAddr: l.Addr().String()}},
	} {
		b, err := NewEmbedded(tt.cfg, testLog(t), EmbeddedOptions{})
		if err == nil {
			b.Close()
			t.Fatalf("%s busy: no error", tt.env)
		}
		if !strings.Contains(err.Error(), tt.env) {
			t.Errorf("error %q does not name %s", err, tt.env)
		}
		// The plain listener bound first was released: the port binds again.
		again, err := net.Listen("tcp", freeAddr)
		if err != nil {
			t.Fatalf("after the %s error, %s is still bound: %v", tt.env, freeAddr, err)
		}
		again.Close()
	}
}

// The fast path is decided topic by topic: a phone subscribed to
// customer/prediction takes that topic through mochi's index (the phone gets
// every message) while customer/move, which nobody outside follows, keeps
// skipping it; the topic comes back once the phone unsubscribes or its
// clean session ends. Inline subscribers get each message exactly once on
// either path.
func TestEmbeddedFastPathPerTopic(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := NewEmbedded(Config{ListenAddr: "127.0.0.1:0", Name: "test"}, testLog(t), EmbeddedOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	harness.Start(t, "embedded broker", b.Run, b.Ready())
	moves := inlineCollector(t, b, "customer/move")
	coupons := inlineCollector(t, b, "customer/prediction")
	publish := func(topic, payload string) {
		t.Helper()
		if err := b.Publish(context.Background(), topic, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	fast := func(topic string) bool { return b.fast.handlers(topic) != nil }
	if !fast("customer/move") || !fast("customer/prediction") {
		t.Fatal("exact inline subscriptions only, yet a topic is off the fast path")
	}
	phone := dialOutside(t, b.Addr(), "phone", "", "", "customer/prediction")
	if fast("customer/prediction") || !fast("customer/move") {
		t.Fatalf("a phone on customer/prediction: prediction fast %v (want false), move fast %v (want true)",
			fast("customer/prediction"), fast("customer/move"))
	}
	publish("customer/move", "m1")
	publish("customer/prediction", "c1")
	if got := waitMessage(t, moves, 5*time.Second); string(got.Payload) != "m1" {
		t.Fatalf("move: inline subscriber got %q", got.Payload)
	}
	if got := waitMessage(t, coupons, 5*time.Second); string(got.Payload) != "c1" {
		t.Fatalf("coupon: inline subscriber got %q", got.Payload)
	}
	if got := waitMessage(t, phone.msg, 5*time.Second); string(got.Payload) != "c1" {
		t.Fatalf("phone got %q, want c1", got.Payload)
	}
	if tok := phone.c.Unsubscribe("customer/prediction"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("unsubscribe: %v", tok.Error())
	}
	harness.Until(t, 5*time.Second, "customer/prediction back on the fast path", func() bool { return fast("customer/prediction") })

	// A wildcard takes every topic it matches; a clean session's end gives them back.
	watcher := dialOutside(t, b.Addr(), "watcher", "", "", "customer/#")
	if fast("customer/move") || fast("customer/prediction") {
		t.Fatal("customer/# from outside left a topic on the fast path")
	}
	publish("customer/move", "m2")
	if got := waitMessage(t, watcher.msg, 5*time.Second); string(got.Payload) != "m2" {
		t.Fatalf("watcher got %q, want m2", got.Payload)
	}
	if got := waitMessage(t, moves, 5*time.Second); string(got.Payload) != "m2" {
		t.Fatalf("move: inline subscriber got %q", got.Payload)
	}
	watcher.c.Disconnect(100)
	harness.Until(t, 5*time.Second, "the topics back on the fast path", func() bool { return fast("customer/move") && fast("customer/prediction") })
	select {
	case m := <-moves:
		t.Fatalf("inline subscriber got %q twice", m.Payload)
	default:
	}
	if got := metrictest.Sum(t, reg, "storeflow_broker_fast_topics"); got != 2 {
		t.Errorf("storeflow_broker_fast_topics %v, want 2", got)
	}

	// An inline wildcard subscription needs the topic index too.
	b2 := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
	inlineCollector(t, b2, "customer/move")
	inlineCollector(t, b2, "customer/#")
	if b2.fast.handlers("customer/move") != nil {
		t.Fatal("an inline wildcard subscription left customer/move on the fast path")
	}
}

// A sensor's message over TCP on a fast topic goes straight to the inline
// handlers, once, acknowledged at QoS 1; a retained one goes through mochi,
// which keeps it for the next subscriber.
func TestEmbeddedFastPathFromSensors(t *testing.T) {
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
	moves := inlineCollector(t, b, "customer/move")
	sensor := dialOutside(t, b.Addr(), "sensor", "", "", "")
	for i, qos := range []byte{0, 1} {
		tok := sensor.c.Publish("customer/move", qos, false, fmt.Sprintf("m%d", i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("QoS %d publish not acknowledged: %v", qos, tok.Error())
		}
		if got := waitMessage(t, moves, 5*time.Second); string(got.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("inline subscriber got %q", got.Payload)
		}
	}
	if b.fast.handlers("customer/move") == nil {
		t.Fatal("customer/move off the fast path with no outside subscriber")
	}
	tok := sensor.c.Publish("customer/move", 1, true, "kept")
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("retained publish: %v", tok.Error())
	}
	if got := waitMessage(t, moves, 5*time.Second); string(got.Payload) != "kept" {
		t.Fatalf("inline subscriber got %q", got.Payload)
	}
	late := dialOutside(t, b.Addr(), "late", "", "", "customer/move")
	if got := waitMessage(t, late.msg, 5*time.Second); string(got.Payload) != "kept" {
		t.Fatalf("a later subscriber got %q, want the retained message", got.Payload)
	}
	select {
	case m := <-moves:
		t.Fatalf("inline subscriber got %q twice", m.Payload)
	default:
	}
}

// The measured failure: once any phone subscribed (to the coupons), every
// move went through mochi's topic index for good, which allocates fresh
// maps for each message. Now a move allocates nothing while phones watch
// customer/prediction.
func TestEmbeddedMovesSkipTheIndexWhilePhonesWatchCoupons(t *testing.T) {
	b := runEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
	var n atomic.Int64
	if err := b.Subscribe("customer/move", func(string, []byte) { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	inlineCollector(t, b, "customer/prediction")
	dialOutside(t, b.Addr(), "phone", "", "", "customer/prediction")
	payload := []byte(`{"id":"127","ts":192322800,"x":3,"y":7}`)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if err := b.Publish(ctx, "customer/move", payload); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || n.Load() != 1001 {
		t.Errorf("a move with a phone on customer/prediction: %.1f allocations, %d delivered; want 0 and 1001", allocs, n.Load())
	}
}
