package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/internal/ratelog"
)

// The tests in this file hold the embedded broker to one rule for every way a
// message can get in front of others (publish, retain, will, session
// takeover) and to bounded costs before a client is trusted. Each reproduces a
// hole measured against the broker before these rules.

// ruled is an embedded broker with storeflow's own topics protected and its
// metrics in reg.
type ruled struct {
	*Embedded
	reg *prometheus.Registry
	log *proctest.SyncBuffer
}

func runRuled(t *testing.T, cfg Config) *ruled {
	t.Helper()
	cfg.Name = "test"
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	reg := prometheus.NewRegistry()
	buf := new(proctest.SyncBuffer)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf)
		}
	})
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := NewEmbedded(cfg, log, EmbeddedOptions{Registerer: reg, OwnTopics: []string{"customer/focus", "customer/prediction"}})
	if err != nil {
		t.Fatal(err)
	}
	harness.Start(t, "embedded broker", b.Run, b.Ready())
	return &ruled{Embedded: b, reg: reg, log: buf}
}

// metric reads one sample of name whose labels include the given pairs.
func (r *ruled) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasPairs(m, labels) {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func hasPairs(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (r *ruled) waitMetric(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	harness.Until(t, 10*time.Second, fmt.Sprintf("%s%v = %v", name, labels, want), func() bool { return r.metric(t, name, labels...) == want })
}

// will is a Last Will for rawConnect.
type will struct {
	topic, payload string
	retain         bool
}

// connectV311 builds an MQTT 3.1.1 CONNECT.
func connectV311(id, user, password string, w *will, clean bool) []byte {
	var flags byte
	if clean {
		flags |= 0x02
	}
	str := func(b *bytes.Buffer, s string) {
		b.WriteByte(byte(len(s) >> 8))
		b.WriteByte(byte(len(s)))
		b.WriteString(s)
	}
	var payload bytes.Buffer
	str(&payload, id)
	if w != nil {
		flags |= 0x04
		if w.retain {
			flags |= 0x20
		}
		str(&payload, w.topic)
		str(&payload, w.payload)
	}
	if user != "" {
		flags |= 0x80
		str(&payload, user)
	}
	if password != "" {
		flags |= 0x40
		str(&payload, password)
	}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60}, payload.Bytes()...)
	return append([]byte{0x10, byte(len(body))}, body...) // tests keep CONNECTs under 128 bytes
}

// rawConnect sends a CONNECT from a plain TCP connection and returns the
// connection and the CONNACK's return code (-1: closed without one).
func rawConnect(t *testing.T, addr, local string, connect []byte) (net.Conn, int) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		return c, -1
	}
	_ = c.SetReadDeadline(time.Time{})
	if ack[0] != 0x20 {
		t.Fatalf("answer to CONNECT: %x, want a CONNACK", ack)
	}
	return c, int(ack[3])
}

// A Last Will is a publish made on the client's behalf: the user must be
// allowed to publish it, and to retain it when it is retained. Before, a
// read-only phone could leave a will on customer/focus (the pipeline acted on
// it: a coupon for the customer it named) or a retained fake coupon on
// customer/prediction.
func TestWillMustBeTheUsersToPublish(t *testing.T) {
	b := runRuled(t, Config{AuthFile: writeFile(t, "auth", strings.Join([]string{
		"user phone " + testHash(t, "phone-pw"),
		"user writer " + testHash(t, "writer-pw"),
		"user keeper " + testHash(t, "keeper-pw"),
		"acl phone read customer/prediction",
		"acl writer write customer/prediction",
		"acl keeper retain customer/prediction",
	}, "\n"))})
	focus := inlineCollector(t, b.Embedded, "customer/focus")
	for _, tc := range []struct {
		name, user, pw string
		w              will
		want           int
	}{
		{"read-only phone, will on customer/focus", "phone", "phone-pw", will{"customer/focus", `{"id":"21","ts":1,"dep":"Boys"}`, false}, 5},
		{"read-only phone, retained will on customer/prediction", "phone", "phone-pw", will{"customer/prediction", `{"discount":99}`, true}, 5},
		{"writer without retain, retained will", "writer", "writer-pw", will{"customer/prediction", `{"discount":99}`, true}, 5},
		{"writer, plain will", "writer", "writer-pw", will{"customer/prediction", `{"w":1}`, false}, 0},
		{"keeper, retained will", "keeper", "keeper-pw", will{"customer/prediction", `{"kept":1}`, true}, 0},
	} {
		c, code := rawConnect(t, b.Addr(), "", connectV311("w-"+tc.user+fmt.Sprint(tc.w.retain), tc.user, tc.pw, &tc.w, true))
		if code != tc.want {
			t.Errorf("%s: CONNACK %d, want %d", tc.name, code, tc.want)
		}
		c.Close() // no DISCONNECT: the will fires, if it was accepted
	}
	if got := b.metric(t, "storeflow_broker_connections_refused_total", "reason", refuseWill); got != 3 {
		t.Errorf("refused will_not_allowed = %v, want 3", got)
	}
	// The keeper's retained will is there for a later subscriber; the refused
	// ones are not, and nothing reached customer/focus.
	deadline := time.After(10 * time.Second)
	for {
		if pk, ok := b.srv.Topics.Retained.Get("customer/prediction"); ok {
			if string(pk.Payload) != `{"kept":1}` {
				t.Fatalf("retained on customer/prediction: %s", pk.Payload)
			}
			break
		}
		select {
		case <-deadline:
			t.Fatal("the keeper's retained will never fired")
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case m := <-focus:
		t.Fatalf("a refused will reached customer/focus: %s", m.Payload)
	default:
	}
}

// Retained messages on storeflow's own topics need an explicit grant; in the
// demo mode (no auth file) nobody has it. Before, any local client could
// plant a retained fake coupon that every phone subscribing later received.
func TestRetainedOnOwnTopicsNeedsARetainGrant(t *testing.T) {
	pub := proctest.FindTool(t, "mosquitto_pub not found: install it with apt-get install -y mosquitto-clients (see README)", "mosquitto_pub")
	sub := proctest.FindTool(t, "mosquitto_sub not found: install it with apt-get install -y mosquitto-clients (see README)", "mosquitto_sub")
	b := runRuled(t, Config{})
	_, port, _ := net.SplitHostPort(b.Addr())
	for _, args := range [][]string{
		{"-t", "customer/prediction", "-m", `{"customer":{"id":"1"},"coupon":{"discount":99}}`},
		{"-t", "customer/focus", "-m", `{"id":"1","ts":1,"dep":"Boys"}`},
		{"-t", "shop/notice", "-m", "open till 8"},
	} {
		out, err := exec.Command(pub, append([]string{"-h", "127.0.0.1", "-p", port, "-r", "-q", "1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %v: %v: %s", args, err, out)
		}
	}
	b.waitMetric(t, 2, "storeflow_broker_denied_total", "action", denyRetain)
	// Retained messages come right after the SUBACK, filter by filter: the
	// first line is the first retained message of any of the three.
	out, err := exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-v", "-C", "1", "-W", "10",
		"-t", "customer/prediction", "-t", "customer/focus", "-t", "shop/notice").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "shop/notice open till 8" {
		t.Fatalf("a later subscriber got %q first, want only the retained shop/notice", got)
	}

	// The cap on retained messages ($SYS topics count too).
	capped := runRuled(t, Config{})
	have := int(capped.metric(t, "storeflow_broker_retained"))
	capped2 := runRuled(t, Config{MaxRetained: have + 2})
	o := dialOutside(t, capped2.Addr(), "retainer", "", "", "")
	for i := range 5 {
		tok := o.c.Publish(fmt.Sprintf("shop/shelf/%d", i), 1, true, "x")
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	capped2.waitMetric(t, 3, "storeflow_broker_denied_total", "action", denyRetainCap)
	if got := capped2.metric(t, "storeflow_broker_retained"); got != float64(have+2) {
		t.Errorf("retained = %v, want the cap %d", got, have+2)
	}
}

// A client id is its user's: another user cannot take a session over (and
// with it the messages queued for it), and nobody can take storeflow's own
// inline client's id. Before, any logged-in user could knock a phone off and
// receive its queued QoS 1 coupons.
func TestClientIDBelongsToItsUser(t *testing.T) {
	b := runRuled(t, Config{QoS: 1, AuthFile: writeFile(t, "auth", strings.Join([]string{
		"user alice " + testHash(t, "alice-pw"),
		"user mallory " + testHash(t, "mallory-pw"),
		"acl * read customer/prediction",
	}, "\n"))})
	url := "tcp://" + b.Addr()
	alice := make(chan string, 10)
	a, err := connectOutside(t, url, "phone-alice", persistent("alice", "alice-pw", alice))
	if err != nil {
		t.Fatal(err)
	}
	a.subscribeAndLeave("customer/prediction")
	if err := b.Publish(context.Background(), "customer/prediction", []byte("coupon for alice")); err != nil {
		t.Fatal(err)
	}

	mallory := make(chan string, 10)
	if _, err := connectOutside(t, url, "phone-alice", persistent("mallory", "mallory-pw", mallory)); err == nil {
		t.Fatal("mallory took over alice's session")
	}
	if _, err := connectOutside(t, url, mqtt.InlineClientId, persistent("mallory", "mallory-pw", mallory)); err == nil {
		t.Fatal("a client took storeflow's inline client id")
	}
	if got := b.metric(t, "storeflow_broker_connections_refused_total", "reason", refuseClientID); got != 2 {
		t.Errorf("refused client_id_in_use = %v, want 2", got)
	}
	if _, err := connectOutside(t, url, "phone-alice", persistent("alice", "alice-pw", alice)); err != nil {
		t.Fatalf("alice back on her own session: %v", err)
	}
	select {
	case m := <-alice:
		if m != "coupon for alice" {
			t.Fatalf("alice got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alice's queued coupon never arrived")
	}
	select {
	case m := <-mallory:
		t.Fatalf("mallory received %q", m)
	default:
	}
}

// A CONNECT that declares a huge size is refused on its fixed header, before
// anything is allocated for it. Before, each one declaring 268,435,455 bytes
// made mochi allocate 256 MiB (four took the process from 43 to 864 MB).
func TestOversizedPacketsAreRefusedBeforeAllocating(t *testing.T) {
	b := runRuled(t, Config{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 4 {
		c := dialTCP(t, b.Addr())
		if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 16)); err == nil || isTimeout(err) {
			t.Fatalf("oversized CONNECT: read %d bytes, %v; want the connection closed", n, err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("four oversized CONNECTs allocated %d MiB", grew>>20)
	}
	b.waitMetric(t, 4, "storeflow_broker_connections_refused_total", "reason", refuseTooLarge)

	// After CONNECT: a PUBLISH over BROKER_MAX_PACKET_SIZE closes the
	// connection and reaches nobody. Before, a 100 MiB one was forwarded.
	got := inlineCollector(t, b.Embedded, "shop/#")
	o := dialOutside(t, b.Addr(), "big", "", "", "")
	o.c.Publish("shop/big", 0, false, bytes.Repeat([]byte("x"), 100<<10))
	b.waitMetric(t, 1, "storeflow_broker_denied_total", "action", denyTooLarge)
	o2 := dialOutside(t, b.Addr(), "small", "", "", "")
	o2.publish("shop/small", []byte("ok"))
	if m := waitMessage(t, got, 5*time.Second); m.Topic != "shop/small" {
		t.Fatalf("got %s (%d bytes) first, want only shop/small", m.Topic, len(m.Payload))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// MQTT 5 clients are told the limit in the CONNACK (property 0x27).
func TestMQTT5ConnackCarriesTheMaximumPacketSize(t *testing.T) {
	b := runRuled(t, Config{MaxPacketSize: 20000})
	_, rest := connectMQTT5(t, b.Addr())
	// rest: flags, reason, property length (one byte here), properties.
	if rest[1] != 0 {
		t.Fatalf("CONNACK reason %#x", rest[1])
	}
	props := rest[3 : 3+int(rest[2])]
	i := bytes.IndexByte(props, 0x27)
	if i < 0 || i+5 > len(props) {
		t.Fatalf("CONNACK properties %x carry no Maximum Packet Size", props)
	}
	if got := int(props[i+1])<<24 | int(props[i+2])<<16 | int(props[i+3])<<8 | int(props[i+4]); got != 20000 {
		t.Fatalf("Maximum Packet Size = %d, want 20000", got)
	}
}

// Connections that never send CONNECT are closed at BROKER_CONNECT_TIMEOUT,
// and at most BROKER_MAX_CONNECTIONS are open at once. Before, 2,000 such
// connections were all still open after 70 s.
func TestSilentAndSurplusConnectionsAreClosed(t *testing.T) {
	b := runRuled(t, Config{ConnectTimeout: 300 * time.Millisecond})
	conns := make([]net.Conn, 20)
	for i := range conns {
		conns[i] = dialTCP(t, b.Addr())
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("silent connection %d: %v after 5s, want closed by the broker", i, err)
		}
	}
	b.waitMetric(t, 20, "storeflow_broker_connections_refused_total", "reason", refuseTimeout)
	b.waitMetric(t, 0, "storeflow_broker_connections")

	capped := runRuled(t, Config{MaxConnections: 3, ConnectTimeout: time.Minute})
	var open []net.Conn
	for range 3 {
		open = append(open, dialTCP(t, capped.Addr()))
	}
	capped.waitMetric(t, 3, "storeflow_broker_connections")
	extra := dialTCP(t, capped.Addr())
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("fourth connection over BROKER_MAX_CONNECTIONS=3: %v, want closed at once", err)
	}
	capped.waitMetric(t, 1, "storeflow_broker_connections_refused_total", "reason", refuseTooMany)
	open[0].Close()
	capped.waitMetric(t, 2, "storeflow_broker_connections")
	if c, code := rawConnect(t, capped.Addr(), "", connectV311("after", "", "", nil, true)); code != 0 {
		t.Fatalf("a connection after one closed: CONNACK %d", code)
	} else {
		c.Close()
	}
}

// A flood of wrong passwords costs a bounded number of password checks, and
// logs a bounded number of lines. Before, each attempt ran PBKDF2 (at 10 per
// second, 76 % of both cores) and logged "client refused".
func TestWrongPasswordFloodIsRateLimited(t *testing.T) {
	b := runRuled(t, Config{AuthFile: writeFile(t, "auth", strings.Join([]string{
		"user phone " + testHash(t, "phone-pw"),
		"acl phone read customer/prediction",
	}, "\n"))})
	const attempts = 60
	codes := map[int]int{}
	for i := range attempts {
		c, code := rawConnect(t, b.Addr(), "", connectV311(fmt.Sprint("guess-", i), "phone", fmt.Sprint("guess-", i), nil, true))
		c.Close()
		codes[code]++
	}
	checks := b.metric(t, "storeflow_broker_password_checks_total", "outcome", "failed")
	limited := b.metric(t, "storeflow_broker_connections_refused_total", "reason", refuseRateLimited)
	t.Logf("%d wrong passwords: CONNACK codes %v, %v checked, %v refused unchecked", attempts, codes, checks, limited)
	if checks > authBurst+5 || checks+limited != attempts {
		t.Errorf("%v password checks and %v rate-limited refusals for %d attempts; want at most %d checks, the rest limited",
			checks, limited, attempts, authBurst+5)
	}
	if codes[0] != 0 {
		t.Errorf("%d wrong passwords accepted", codes[0])
	}
	// The right password from another address gets in meanwhile.
	c, code := rawConnect(t, b.Addr(), "127.0.0.2", connectV311("phone-ok", "phone", "phone-pw", nil, true))
	if code != 0 {
		t.Fatalf("right password from 127.0.0.2 during the flood: CONNACK %d", code)
	}
	c.Close()
	if lines := strings.Count(b.log.String(), `msg="client refused"`); lines > 3 {
		t.Errorf("%d \"client refused\" lines for %d refusals, want at most one per reason and 10 s", lines, attempts)
	}
}

// Without an auth file, $SYS is for clients on this host only, and nobody
// reads where refused wills go.
func TestSysTopicsWithoutAuthFile(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	h := &authHook{srv: srv, m: newMetrics(prometheus.NewRegistry(), srv), warn: ratelog.New(slog.New(slog.DiscardHandler), time.Second)}
	for _, tc := range []struct {
		remote, topic string
		want          bool
	}{
		{"127.0.0.1:4000", "$SYS/broker/version", true},
		{"[::1]:4000", "$SYS/#", true},
		{"192.0.2.7:4000", "$SYS/broker/version", false},
		{"192.0.2.7:4000", "customer/prediction", true},
		{"127.0.0.1:4000", refusedWillTopic, false},
	} {
		cl := srv.NewClient(nil, "tcp", "x", false)
		cl.Net.Remote = tc.remote
		if got := h.OnACLCheck(cl, tc.topic, false); got != tc.want {
			t.Errorf("read %s from %s: %v, want %v", tc.topic, tc.remote, got, tc.want)
		}
	}
	sub := proctest.FindTool(t, "mosquitto_sub not found: install it with apt-get install -y mosquitto-clients (see README)", "mosquitto_sub")
	b := runRuled(t, Config{})
	_, port, _ := net.SplitHostPort(b.Addr())
	out, err := exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-C", "1", "-W", "10", "-t", "$SYS/broker/version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != mqtt.Version {
		t.Fatalf("loopback mosquitto_sub on $SYS/broker/version: %q, %v", out, err)
	}
}

// An offline persistent session keeps at most BROKER_SESSION_QUEUE messages:
// the oldest go first, each one counted, and on return the phone gets the
// newest. Every message is delivered or counted.
func TestOfflineSessionKeepsTheNewestAndCountsTheRest(t *testing.T) {
	const limit, published = 10, 25
	b := runRuled(t, Config{QoS: 1, SessionQueue: limit})
	got := make(chan string, 100)
	opts := persistent("", "", got)
	o, err := connectOutside(t, "tcp://"+b.Addr(), "phone-1", opts)
	if err != nil {
		t.Fatal(err)
	}
	o.subscribeAndLeave("customer/prediction")
	b.waitMetric(t, 0, "storeflow_broker_connections")
	for i := range published {
		if err := b.Publish(context.Background(), "customer/prediction", []byte(fmt.Sprint("coupon ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := connectOutside(t, "tcp://"+b.Addr(), "phone-1", opts); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for len(seen) < limit {
		select {
		case m := <-got:
			seen = append(seen, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of the %d newest coupons: %v", len(seen), limit, seen)
		}
	}
	// mochi resends a session's waiting messages sorted by the second they
	// arrived in, so within one second the order is not kept: compare sets.
	slices.Sort(seen)
	var want []string
	for i := published - limit; i < published; i++ {
		want = append(want, fmt.Sprint("coupon ", i))
	}
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Errorf("on return the phone got %v, want the newest %d: %v", seen, limit, want)
	}
	b.waitMetric(t, limit, "storeflow_broker_delivered_total")
	if got := b.metric(t, "storeflow_broker_dropped_total", "reason", dropSessionQueue); got != published-limit {
		t.Errorf("dropped session_queue_full = %v, want %d", got, published-limit)
	}
}

// At shutdown an MQTT 5 client gets DISCONNECT 0x8B (server shutting down);
// MQTT 3.1.1 clients, which have no DISCONNECT from the server, see the
// connection close (TestEmbeddedStopsWithSilentConnections).
func TestShutdownSaysGoodbyeToMQTT5Clients(t *testing.T) {
	b, stop := startEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
	c, _ := connectMQTT5(t, b.Addr())
	stop(5 * time.Second)
	rest, err := io.ReadAll(c)
	if err != nil || len(rest) < 3 || rest[0] != 0xe0 || rest[2] != 0x8b {
		t.Fatalf("after the stop the MQTT 5 client got %x, %v; want DISCONNECT with reason 0x8b", rest, err)
	}
}

// connectMQTT5 connects to addr as the MQTT 5 client "v5" (clean start,
// keep-alive 60, no properties) and returns the connection, closed at the
// end of the test and reading with a 5 s deadline, and the CONNACK after its
// fixed header.
func connectMQTT5(t *testing.T, addr string) (net.Conn, []byte) {
	t.Helper()
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 2, 'v', '5'}
	c := dialTCP(t, addr)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	head := make([]byte, 2)
	if _, err := io.ReadFull(c, head); err != nil || head[0] != 0x20 {
		t.Fatalf("CONNACK header %x, %v", head, err)
	}
	rest := make([]byte, head[1])
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatal(err)
	}
	return c, rest
}

// persistent sets up an MQTT 3.1.1 client with a persistent session (clean
// session off) that sends each payload it receives to got; empty user and
// pw log in without credentials.
func persistent(user, pw string, got chan<- string) func(*paho.ClientOptions) {
	return func(o *paho.ClientOptions) {
		o.SetUsername(user).SetPassword(pw).SetCleanSession(false).SetProtocolVersion(4).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	}
}

// subscribeAndLeave subscribes at QoS 1 and disconnects, so that the
// client's persistent session keeps what is published to filter meanwhile.
func (o *outside) subscribeAndLeave(filter string) {
	o.t.Helper()
	if tok := o.c.Subscribe(filter, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		o.t.Fatalf("subscribe: %v", tok.Error())
	}
	o.c.Disconnect(100)
}

// dialTCP connects to addr, closing the connection at the end of the test.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
