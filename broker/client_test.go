package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/storeflow/storeflow/internal/certtest"
	"github.com/storeflow/storeflow/internal/mosquittotest"
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
			c, err := Dial(context.Background(), cfg, testLog(t), nil)
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
			errorNames(t, err, "tcp://"+addr, "not Authorized", "MQTT_USERNAME", "MQTT_PASSWORD")
			if tt.password != "" && strings.Contains(err.Error(), tt.password) {
				t.Errorf("error %q shows the password", err)
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
		c, err := Dial(context.Background(), externalConfig(t, refused, refused), testLog(t), nil)
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
		errorNames(t, err, "check MQTT_HOST and MQTT_PORT")
	})

	t.Run("credentials in the URL", func(t *testing.T) {
		// paho's "network Error : dial tcp …: connection refused" named no
		// setting; the error says which ones to check, and never the password.
		cfg := externalConfig(t, "tcp://storeflow:s3cret-pw@"+refused, refused)
		cfg.Password = "other-secret"
		c, err := Dial(context.Background(), cfg, testLog(t), nil)
		if err == nil {
			c.Run(canceled())
			t.Fatal("Dial to a closed port succeeded")
		}
		errorNames(t, err, "connection refused", "check MQTT_HOST and MQTT_PORT", "MQTT_PORT="+portOf(t, refused))
		for _, secret := range []string{"s3cret-pw", "other-secret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows a password", err)
			}
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
	// (it retries at most reconnectMaxWait apart) and renewed it; until then
	// what the sensor publishes is dropped. Publish again until one arrives.
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
	// A client id every MQTT 3.1.1 broker takes (see validateExternal),
	// unique per test: the session is persistent.
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return Config{Host: hosts, Port: port, Name: fmt.Sprintf("storeflow-%08x", h.Sum32()), QoS: 1, OfflineQueue: 1000}
}

// runClient dials the external broker, runs the client until the test ends
// and returns once it is connected.
func runClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg, testLog(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	harness.Start(t, "external broker client", c.Run, c.Ready())
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
	return proctest.FreeAddr(t)
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

// Mutual TLS against mosquitto with require_certificate and
// use_identity_as_username: storeflow connects with its client certificate,
// publishes and subscribes; a phone with a certificate of its own receives
// what storeflow publishes. Every way to get TLS wrong fails Dial at once,
// with an error that names the variable to fix.
func TestClientMutualTLS(t *testing.T) {
	ca := certtest.NewCA(t, "shop")
	m := mosquittotest.NewWith(t, mosquittotest.Options{
		Conf: "allow_anonymous false",
		TLS:  &mosquittotest.TLS{CA: ca, ServerNames: []string{"broker.shop.test"}, RequireCertificate: true, UseIdentityAsUsername: true},
	})
	addr := m.Addr()
	storeflow := ca.Client("storeflow")
	tlsConfig := func(t *testing.T, hosts string) Config {
		t.Helper()
		cfg := externalConfig(t, hosts, addr)
		cfg.BrokerCertFile = ca.CertFile
		cfg.ClientCertFile, cfg.ClientKeyFile = storeflow.CertFile, storeflow.KeyFile
		return cfg
	}

	t.Run("publish and subscribe", func(t *testing.T) {
		c := runClient(t, tlsConfig(t, "127.0.0.1"))
		got := make(chan message, 100)
		if err := c.Subscribe("customer/#", collect(got)); err != nil {
			t.Fatal(err)
		}
		phone := dialPeer(t, peer{addr: addr, id: "phone", tls: peerTLS(t, ca, ca.Client("phone")), filter: "customer/prediction"})
		if err := c.Publish(context.Background(), "customer/prediction", []byte("coupon")); err != nil {
			t.Fatal(err)
		}
		for _, ch := range []chan message{got, phone.msg} {
			if m := waitMessage(t, ch, 5*time.Second); m.Topic != "customer/prediction" || string(m.Payload) != "coupon" {
				t.Fatalf("got %s %q, want customer/prediction coupon", m.Topic, m.Payload)
			}
		}
		phone.publish("customer/move", []byte("aisle 4"))
		if m := waitMessage(t, got, 5*time.Second); m.Topic != "customer/move" || string(m.Payload) != "aisle 4" {
			t.Fatalf("handler got %s %q, want the phone's move", m.Topic, m.Payload)
		}
	})

	connects := []struct {
		name, hosts, serverName string
	}{
		{"mqtts URL without port", "mqtts://127.0.0.1", ""},
		{"ssl URL with port", "ssl://" + addr, ""},
		{"host name", "localhost", ""},
		{"server name override", "127.0.0.1", "broker.shop.test"},
	}
	for _, tt := range connects {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tlsConfig(t, tt.hosts)
			cfg.TLSServerName = tt.serverName
			runClient(t, cfg)
		})
	}

	otherCA := certtest.NewCA(t, "elsewhere")
	intruder := otherCA.Client("storeflow")
	fails := []struct {
		name  string
		edit  func(*Config)
		wants []string
	}{
		{"broker signed by another CA", func(c *Config) { c.BrokerCertFile = otherCA.CertFile },
			[]string{"ssl://127.0.0.1:", "certificate signed by unknown authority", "MQTT_BROKER_CERT_FILE"}},
		{"name not in the certificate", func(c *Config) { c.TLSServerName = "wrong.shop.test" },
			[]string{"wrong.shop.test", "MQTT_TLS_SERVER_NAME"}},
		{"no client certificate", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = "", "" },
			[]string{"MQTT_CLIENT_CERT_FILE", "MQTT_CLIENT_KEY_FILE"}},
		{"client certificate from another CA", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = intruder.CertFile, intruder.KeyFile },
			[]string{"MQTT_CLIENT_CERT_FILE", "signed by a CA the broker trusts"}},
		{"plain TCP to the TLS port", func(c *Config) { c.BrokerCertFile, c.ClientCertFile, c.ClientKeyFile = "", "", "" },
			[]string{"tcp://127.0.0.1:"}},
		{"CA file missing", func(c *Config) { c.BrokerCertFile = filepath.Join(t.TempDir(), "nope.pem") },
			[]string{"MQTT_BROKER_CERT_FILE=", "nope.pem", "no such file"}},
		{"key does not match the certificate", func(c *Config) { c.ClientKeyFile = intruder.KeyFile },
			[]string{"MQTT_CLIENT_CERT_FILE=", "MQTT_CLIENT_KEY_FILE=", "private key does not match"}},
	}
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tlsConfig(t, "127.0.0.1")
			tt.edit(&cfg)
			msg := dialFails(t, cfg)
			for _, want := range tt.wants {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

// A password broker with an ACL file: storeflow (password read from
// MQTT_PASSWORD_FILE) publishes and reads customer/#; the phone may only read
// customer/prediction, and what it publishes elsewhere never arrives.
func TestClientACL(t *testing.T) {
	pw := mosquittotest.PasswordFile(t, "storeflow", "s3cret-pw", "phone", "phone-pw")
	acl := mosquittotest.ACLFile(t, "user storeflow\ntopic readwrite customer/#\n\nuser phone\ntopic read customer/prediction")
	addr := mosquittotest.Start(t, "allow_anonymous false\npassword_file "+pw+"\nacl_file "+acl)

	cfg := externalConfig(t, "127.0.0.1", addr)
	cfg.Username = "storeflow"
	cfg.PasswordFile = filepath.Join(t.TempDir(), "mqtt-password")
	if err := os.WriteFile(cfg.PasswordFile, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := runClient(t, cfg)
	got := make(chan message, 100)
	if err := c.Subscribe("customer/#", collect(got)); err != nil {
		t.Fatal(err)
	}
	phone := dialPeer(t, peer{addr: addr, id: "phone", user: "phone", password: "phone-pw", filter: "customer/#"})

	// The phone reads customer/prediction only: the focus published first
	// would reach it first if it could.
	for _, topic := range []string{"customer/focus", "customer/prediction"} {
		if err := c.Publish(context.Background(), topic, []byte("from storeflow")); err != nil {
			t.Fatal(err)
		}
		if m := waitMessage(t, got, 5*time.Second); m.Topic != topic {
			t.Fatalf("storeflow got %s, want its own %s", m.Topic, topic)
		}
	}
	if m := waitMessage(t, phone.msg, 5*time.Second); m.Topic != "customer/prediction" {
		t.Fatalf("phone got %s, want customer/prediction only", m.Topic)
	}

	// The broker acknowledges the phone's QoS 1 publish to customer/focus
	// and drops it. storeflow publishes a marker after that acknowledgement:
	// had the phone's message been let through, it would arrive first.
	if tok := phone.c.Publish("customer/focus", 1, false, "forged"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("phone publish: %v", tok.Error())
	}
	if err := c.Publish(context.Background(), "customer/focus", []byte("marker")); err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, got, 5*time.Second); string(m.Payload) != "marker" {
		t.Fatalf("storeflow got %s %q, want its marker: the phone's publish got through", m.Topic, m.Payload)
	}
}

// MQTT_PASSWORD_FILE: an unreadable file is an error that names the variable
// and the file, never a password; a file and MQTT_PASSWORD together are
// refused.
func TestClientPasswordFileErrors(t *testing.T) {
	addr := proctest.FreeAddr(t) // Dial fails before connecting
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, password, file string
		wants                []string
	}{
		{"missing file", "", filepath.Join(dir, "missing"), []string{"MQTT_PASSWORD_FILE=" + filepath.Join(dir, "missing"), "no such file"}},
		{"a directory", "", dir, []string{"MQTT_PASSWORD_FILE=" + dir}},
		{"empty file", "", empty, []string{"MQTT_PASSWORD_FILE=" + empty, "empty"}},
		{"both set", "s3cret-pw", empty, []string{"MQTT_PASSWORD and MQTT_PASSWORD_FILE are both set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := externalConfig(t, "127.0.0.1", addr)
			cfg.Username, cfg.Password, cfg.PasswordFile = "storeflow", tt.password, tt.file
			msg := dialFails(t, cfg)
			for _, want := range tt.wants {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, "s3cret-pw") {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
}

// Nothing is lost across a broker restart: what storeflow publishes while the
// broker is down waits in the offline queue (Publish returns at once) and
// reaches a persistent QoS 1 subscriber, in order, after the restart; what
// does not fit in the queue is dropped and counted; storeflow's own
// subscriptions deliver again.
func TestClientKeepsMessagesAcrossBrokerRestart(t *testing.T) {
	m := mosquittotest.NewWith(t, mosquittotest.Options{Conf: "allow_anonymous true", Persistent: true})
	cfg := externalConfig(t, "127.0.0.1", m.Addr())
	cfg.OfflineQueue = 20
	c := runClient(t, cfg)
	got := make(chan message, 100)
	if err := c.Subscribe("customer/enter", collect(got)); err != nil {
		t.Fatal(err)
	}
	phone := dialPeer(t, peer{addr: m.Addr(), id: "phone", filter: "customer/prediction", qos: 1, persistent: true})
	ctx := context.Background()
	if err := c.Publish(ctx, "customer/prediction", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if msg := waitMessage(t, phone.msg, 5*time.Second); string(msg.Payload) != "before" {
		t.Fatalf("phone got %q before the restart", msg.Payload)
	}

	m.Stop()
	harness.Until(t, 5*time.Second, "storeflow notices the broker is gone", func() bool { return stats(c).ConnectionLost > 0 })
	start := time.Now()
	for i := range 25 {
		err := c.Publish(ctx, "customer/prediction", fmt.Appendf(nil, "offline %d", i))
		switch {
		case i < cfg.OfflineQueue && err != nil:
			t.Fatalf("publish %d while disconnected: %v", i, err)
		case i >= cfg.OfflineQueue && !errors.Is(err, ErrOfflineQueueFull):
			t.Fatalf("publish %d with a full queue: got %v, want ErrOfflineQueueFull", i, err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("25 publishes while disconnected took %s: Publish must not wait for the broker", took)
	}
	if s := stats(c); s.OfflineQueued != 20 || s.OfflineDropped != 5 || s.OfflinePending != 20 {
		t.Errorf("stats while disconnected: %+v, want 20 queued, 5 dropped, 20 pending", s)
	}

	m.Start()
	for i := range cfg.OfflineQueue {
		msg := waitMessage(t, phone.msg, 15*time.Second)
		if want := fmt.Sprintf("offline %d", i); string(msg.Payload) != want {
			t.Fatalf("phone got %q, want %q", msg.Payload, want)
		}
	}
	t.Logf("offline queue delivered %s after the restart", time.Since(start).Round(time.Millisecond))
	// The dropped ones never come: the next message is the next publish.
	if err := c.Publish(ctx, "customer/prediction", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if msg := waitMessage(t, phone.msg, 5*time.Second); string(msg.Payload) != "after" {
		t.Fatalf("phone got %q, want \"after\"", msg.Payload)
	}
	// storeflow renewed its subscription before sending its queue.
	dialPeer(t, peer{addr: m.Addr(), id: "sensor"}).publish("customer/enter", []byte("door"))
	if msg := waitMessage(t, got, 5*time.Second); string(msg.Payload) != "door" {
		t.Fatalf("storeflow got %q after the restart", msg.Payload)
	}
	harness.Until(t, 5*time.Second, "every acknowledgement counted", func() bool { return stats(c).Published == 22 })
	if s := stats(c); s.Connects != 2 || s.ConnectionLost != 1 || s.PublishErrors != 0 || s.OfflinePending != 0 {
		t.Errorf("stats after the restart: %+v", s)
	}
}

func TestValidateExternalClient(t *testing.T) {
	valid := Config{Host: "broker.shop.example", Port: 8883, Name: "storeflow-1", QoS: 1, OfflineQueue: 1000}
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"mutual TLS", func(c *Config) {
			c.BrokerCertFile, c.ClientCertFile, c.ClientKeyFile, c.TLSServerName = "ca.pem", "c.pem", "k.pem", "broker"
		}, ""},
		{"client certificate with an ssl URL", func(c *Config) {
			c.Host, c.ClientCertFile, c.ClientKeyFile = "ssl://broker", "c.pem", "k.pem"
		}, ""},
		{"19 bytes of id (23 with -pub)", func(c *Config) { c.Name = "storeflow_store-012" }, ""},
		{"20 bytes of id (24 with -pub)", func(c *Config) { c.Name = "storeflow_store-0123" }, `MQTT_NAME="storeflow_store-0123"`},
		{"id with a slash", func(c *Config) { c.Name = "store/1" }, `MQTT_NAME="store/1"`},
		{"password and file", func(c *Config) { c.Password, c.PasswordFile = "x", "/run/secrets/mqtt" },
			"MQTT_PASSWORD and MQTT_PASSWORD_FILE are both set"},
		{"certificate without key", func(c *Config) { c.BrokerCertFile, c.ClientCertFile = "ca.pem", "c.pem" },
			"MQTT_CLIENT_CERT_FILE=\"c.pem\" and MQTT_CLIENT_KEY_FILE=\"\": set both"},
		{"key without certificate", func(c *Config) { c.BrokerCertFile, c.ClientKeyFile = "ca.pem", "k.pem" },
			"MQTT_CLIENT_CERT_FILE=\"\" and MQTT_CLIENT_KEY_FILE=\"k.pem\": set both"},
		{"client certificate without TLS", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = "c.pem", "k.pem" },
			"uses no TLS"},
		{"negative queue", func(c *Config) { c.OfflineQueue = -1 }, "MQTT_OFFLINE_QUEUE=-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// dialFails dials cfg, wants an error within 5 s (fail fast: no retry loop)
// and returns its message.
func dialFails(t *testing.T, cfg Config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, cfg, testLog(t), prometheus.NewRegistry())
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded, want an error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Dial took %s to fail", took)
	}
	t.Logf("Dial: %v", err)
	return err.Error()
}

// peer is an outside MQTT client: a phone or a sensor.
type peer struct {
	addr, id, user, password string
	tls                      *tls.Config // nil: plain TCP
	filter                   string      // subscribed before dialPeer returns, unless empty
	qos                      byte        // of the subscription
	persistent               bool        // clean session off and reconnecting: a broker restart loses nothing
}

func dialPeer(t *testing.T, p peer) *outside {
	t.Helper()
	o := &outside{t: t, id: p.id, msg: make(chan message, 10000)}
	scheme := "tcp://"
	if p.tls != nil {
		scheme = "ssl://"
	}
	opts := paho.NewClientOptions().AddBroker(scheme + p.addr).SetClientID(p.id).
		SetUsername(p.user).SetPassword(p.password).SetTLSConfig(p.tls).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(true).
		SetCleanSession(!p.persistent).SetAutoReconnect(p.persistent).SetMaxReconnectInterval(time.Second)
	o.c = paho.NewClient(opts)
	if tok := o.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("peer %s: connect to %s: %v", p.id, p.addr, tok.Error())
	}
	t.Cleanup(func() { o.c.Disconnect(100) })
	if p.filter != "" {
		o.subscribe(p.filter, p.qos)
	}
	return o
}

// peerTLS trusts ca and presents the client certificate pair.
func peerTLS(t *testing.T, ca *certtest.CA, pair certtest.Pair) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// clientStats is what a test reads of a client's metrics.
type clientStats struct {
	Connects, ConnectionLost, Published, PublishErrors, Resent, OfflineQueued, OfflineDropped uint64
	OfflinePending                                                                            int
}

func stats(c *Client) clientStats {
	n := func(m prometheus.Counter) uint64 { return uint64(testutil.ToFloat64(m)) }
	return clientStats{
		Connects: n(c.m.connects), ConnectionLost: n(c.m.connectionLost), Published: n(c.m.published),
		PublishErrors: n(c.m.publishErrors), Resent: n(c.m.resent), OfflineQueued: n(c.m.offlineQueued),
		OfflineDropped: n(c.m.offlineDropped), OfflinePending: c.pending(),
	}
}

// A shared subscription ($share/<group>/<filter>, MQTT_SHARE_GROUP): the
// broker hands each message to one client of the group, and the handler
// gets it on its plain topic (paho routes the filter without the prefix).
func TestClientSharedSubscription(t *testing.T) {
	addr := mosquittotest.Start(t, "allow_anonymous true")
	const messages = 200
	var mu sync.Mutex
	seen := map[string]int{}
	got := make([]int, 2)
	for i := range got {
		cfg := externalConfig(t, "127.0.0.1", addr)
		cfg.Name += strconv.Itoa(i)
		c := runClient(t, cfg)
		err := c.Subscribe("$share/storeflow/customer/move", func(topic string, payload []byte) {
			mu.Lock()
			defer mu.Unlock()
			if topic != "customer/move" {
				t.Errorf("handler got topic %q, want customer/move", topic)
			}
			seen[string(payload)]++
			got[i]++
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sensor := dialOutside(t, addr, "sensor", "", "", "")
	for n := range messages {
		if tok := sensor.c.Publish("customer/move", 1, false, strconv.Itoa(n)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", n, tok.Error())
		}
	}
	harness.Until(t, 10*time.Second, "every message delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == messages
	})
	mu.Lock()
	defer mu.Unlock()
	for payload, n := range seen {
		if n != 1 {
			t.Errorf("message %s delivered %d times, want once to the group", payload, n)
		}
	}
	if got[0] == 0 || got[1] == 0 || got[0]+got[1] != messages {
		t.Fatalf("the two clients got %d and %d of %d messages: want a share each, none twice", got[0], got[1], messages)
	}
}

// A message a SubscribeAck handler did not acknowledge before its client
// went away is delivered again to the next connection under the same
// session, and so is one queued for the session meanwhile; one
// acknowledged is not.
func TestClientSubscribeAckRedeliversUnacknowledged(t *testing.T) {
	addr := mosquittotest.Start(t, "allow_anonymous true")
	cfg := externalConfig(t, "127.0.0.1", addr)
	first, err := Dial(context.Background(), cfg, testLog(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan message, 10)
	if err := first.SubscribeAck("$share/g/customer/focus", func(topic string, payload []byte, ack func()) {
		if string(payload) == "acked" {
			ack()
		}
		got <- message{topic, bytes.Clone(payload)}
	}); err != nil {
		t.Fatal(err)
	}
	sensor := dialOutside(t, addr, "sensor", "", "", "")
	for _, p := range []string{"acked", "held"} {
		if tok := sensor.c.Publish("customer/focus", 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", p, tok.Error())
		}
		waitMessage(t, got, 5*time.Second)
	}
	first.Close()
	// Queued for the session while it is away.
	if tok := sensor.c.Publish("customer/focus", 1, false, "queued"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	second := runClient(t, cfg)
	again := make(chan message, 10)
	if err := second.SubscribeAck("$share/g/customer/focus", func(topic string, payload []byte, ack func()) {
		ack()
		again <- message{topic, bytes.Clone(payload)}
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"held", "queued"} {
		if m := waitMessage(t, again, 5*time.Second); m.Topic != "customer/focus" || string(m.Payload) != want {
			t.Fatalf("delivered again: %s %q, want customer/focus %q", m.Topic, m.Payload, want)
		}
	}
	if tok := sensor.c.Publish("customer/focus", 1, false, "next"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if m := waitMessage(t, again, 5*time.Second); string(m.Payload) != "next" {
		t.Fatalf("after the held message: %q, want \"next\" (the acknowledged one must not come again)", m.Payload)
	}
}

// A second subscription to a filter (the live view following the
// pipeline's topics) adds a handler; it does not replace the first.
func TestClientTwoSubscriptionsToOneFilter(t *testing.T) {
	addr := mosquittotest.Start(t, "allow_anonymous true")
	c := runClient(t, externalConfig(t, "127.0.0.1", addr))
	first, second := make(chan message, 10), make(chan message, 10)
	if err := c.Subscribe("customer/move", collect(first)); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("customer/move", collect(second)); err != nil {
		t.Fatal(err)
	}
	sensor := dialOutside(t, addr, "sensor", "", "", "")
	sensor.publish("customer/move", []byte(`{"id":"2"}`))
	for i, ch := range []chan message{first, second} {
		if m := waitMessage(t, ch, 5*time.Second); string(m.Payload) != `{"id":"2"}` {
			t.Fatalf("handler %d got %q", i+1, m.Payload)
		}
	}
}
