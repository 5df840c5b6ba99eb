package e2e

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
)

// The tests in this file follow a coupon over its last hop, from storeflow's
// publish to a phone that is a real outside MQTT client, through the real
// wiring and the embedded broker.

var departments = []string{"Boys", "Girls", "Men", "Sports", "Women"}

// focusBurst publishes a visit for customers 1..n, as an outside sensor
// would: an entry, then a focus event in every department, at ts; and waits
// until storeflow has decided each focus. With PREDICTION_THRESHOLD=0 most of
// them become coupons.
func focusBurst(t *testing.T, sys *system, sensor *client, n int, ts int64) {
	t.Helper()
	before := sys.metric(t, "storeflow_focus_outcomes_total")
	for i := 1; i <= n; i++ {
		sensor.publish("customer/enter", fmt.Sprintf(`{"id":"%d","ts":%d}`, i, ts))
		for _, dep := range departments {
			sensor.publish("customer/focus", fmt.Sprintf(`{"id":"%d","ts":%d,"dep":%q}`, i, ts, dep))
		}
	}
	sys.waitMetric(t, before+float64(n*len(departments)), 30*time.Second, "storeflow_focus_outcomes_total")
}

// A phone that stops reading loses coupons only with a count: every coupon
// storeflow published was written to it or counted as dropped, and it got
// every one written. Before, a phone that paused for 6 s received 20,363 of
// 60,000 coupons and nothing anywhere counted the other 39,637.
func TestPausedPhoneLosesNothingUncounted(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("QoS %d", qos), func(t *testing.T) {
			// Coupons for the same shoppers again and again: no frequency caps.
			sys := startSystem(t, map[string]string{"PREDICTION_THRESHOLD": "0", "BROKER_CLIENT_QUEUE": "32",
				"COUPONS_PER_SHOPPER_PER_DAY": "0", "COUPON_DEPARTMENT_COOLDOWN": "0"})
			sensor := dial(t, sys.app.BrokerAddr(), "sensor", "")

			// The phone: paho with a handler that blocks until the gate
			// opens, so it stops reading its socket, which is kept small.
			gate := make(chan struct{})
			var received atomic.Int64
			opts := paho.NewClientOptions().AddBroker("tcp://" + sys.app.BrokerAddr()).SetClientID("paused-phone").
				SetAutoReconnect(false).SetOrderMatters(true).SetKeepAlive(time.Minute).SetPingTimeout(time.Minute).
				SetDialer(&net.Dialer{Timeout: 5 * time.Second, Control: smallReceiveBuffer})
			phone := paho.NewClient(opts)
			if tok := phone.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("phone: connect: %v", tok.Error())
			}
			t.Cleanup(func() { phone.Disconnect(100) })
			tok := phone.Subscribe("customer/prediction", qos, func(_ paho.Client, _ paho.Message) {
				<-gate
				received.Add(1)
			})
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("phone: subscribe: %v", tok.Error())
			}

			// Visits until the paused phone's socket buffers and its
			// BROKER_CLIENT_QUEUE are full and the broker drops: how many
			// coupons the kernel holds for it varies from run to run.
			now := time.Now().Unix()
			for round := int64(0); sys.metric(t, "storeflow_broker_dropped_total") == 0; round++ {
				if round == 10 {
					t.Fatalf("the paused phone dropped nothing after %v coupons", sys.metric(t, "storeflow_coupons_published_total"))
				}
				focusBurst(t, sys, sensor, 400, now+100*round)
			}
			close(gate)

			published := sys.metric(t, "storeflow_coupons_published_total")
			var delivered, dropped float64
			harness.Until(t, 20*time.Second, "published = delivered + dropped = received + dropped", func() bool {
				delivered = sys.metric(t, "storeflow_broker_delivered_total")
				dropped = sys.metric(t, "storeflow_broker_dropped_total")
				return delivered+dropped == published && float64(received.Load()) == delivered
			})
			t.Logf("published %v coupons: delivered and received %v, dropped and counted %v (client_queue_full %v, inflight_full %v)",
				published, delivered, dropped, sys.metric(t, "storeflow_broker_dropped_total", "reason=client_queue_full"),
				sys.metric(t, "storeflow_broker_dropped_total", "reason=inflight_full"))
		})
	}
}

// smallReceiveBuffer keeps the phone's socket buffer small, so a pause in
// reading reaches the broker's queue after a few coupons, not megabytes.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}

// A phone with a persistent session that was offline gets, when it comes
// back, the coupons published meanwhile, at QoS 1. Before, a phone offline
// while 14 coupons were published got none of them. The phone is the real
// mosquitto_sub, in both protocol versions a phone may speak.
func TestOfflinePhoneGetsItsCouponsOnReturn(t *testing.T) {
	sub := proctest.FindTool(t, "mosquitto_sub is not installed: apt-get install -y mosquitto-clients", "mosquitto_sub", "/usr/bin/mosquitto_sub")
	for _, tc := range []struct {
		name    string
		version []string
	}{
		{"MQTT 3.1.1", []string{"-V", "311"}},
		{"MQTT 5", []string{"-V", "5", "-x", "3600"}}, // MQTT 5 sessions end at disconnect unless given an expiry
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := startSystem(t, map[string]string{"PREDICTION_THRESHOLD": "0"})
			_, port, _ := net.SplitHostPort(sys.app.BrokerAddr())
			phone := append([]string{"-h", "127.0.0.1", "-p", port, "-q", "1", "-c", "-i", "phone-7", "-t", "customer/prediction"}, tc.version...)

			// Subscribe, then go away (-E: exit once the subscription is acknowledged).
			if out, err := exec.Command(sub, append(phone, "-E")...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_sub -E: %v: %s", err, out)
			}
			sys.waitMetric(t, 0, 5*time.Second, "storeflow_broker_connections")

			sensor := dial(t, sys.app.BrokerAddr(), "sensor", "")
			const want = 14
			now := time.Now().Unix()
			for i := 1; sys.metric(t, "storeflow_coupons_published_total") < want; i++ {
				if i > 200 {
					t.Fatalf("200 focus events gave %v coupons, want %d", sys.metric(t, "storeflow_coupons_published_total"), want)
				}
				before := sys.metric(t, "storeflow_focus_outcomes_total")
				sensor.publish("customer/focus", fmt.Sprintf(`{"id":"%d","ts":%d,"dep":"Men"}`, i, now))
				sys.waitMetric(t, before+1, 5*time.Second, "storeflow_focus_outcomes_total")
			}

			out, err := exec.Command(sub, append(phone, "-C", fmt.Sprint(want), "-W", "10")...).Output()
			if err != nil {
				t.Fatalf("the phone back: %v after %d lines", err, bytes.Count(out, []byte("\n")))
			}
			n := 0
			for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); n++ {
				checkPredictionShape(t, sc.Bytes())
			}
			if n != want {
				t.Fatalf("the phone got %d coupons on its return, want %d", n, want)
			}
			if dropped := sys.metric(t, "storeflow_broker_dropped_total"); dropped != 0 {
				t.Errorf("storeflow_broker_dropped_total = %v, want 0", dropped)
			}
		})
	}
}

// A flood of wrong passwords does not starve the store: the password checks it
// costs are bounded, and a real shopper's coupon still comes. Before, wrong
// passwords at 10 per second took 76 % of both cores and a shopper's
// dwell→coupon latency went from 0.05 s to 1.5 s.
func TestWrongPasswordFloodKeepsCouponsFlowing(t *testing.T) {
	// A hash in the auth file's format, made here as another tool would, at a
	// sixth of storeflow passwd's iterations: the race detector makes each
	// check take seconds at the full count.
	salt := []byte("sixteen byte salt")
	key, err := pbkdf2.Key(sha256.New, "sensor-pw", salt, 100_000, 32)
	if err != nil {
		t.Fatal(err)
	}
	sensorHash := "pbkdf2-sha256$100000$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(key)
	auth := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(auth, []byte(strings.Join([]string{
		"user sensor " + sensorHash,
		"acl sensor readwrite customer/#",
	}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, map[string]string{"PREDICTION_THRESHOLD": "0", "BROKER_AUTH_FILE": auth})
	sensor := dialAs(t, sys.app.BrokerAddr(), "sensor", "sensor", "sensor-pw", "customer/prediction")

	linger := func(id string) time.Duration {
		t.Helper()
		s := &script{cl: sensor, id: id, ts: time.Now().Unix()}
		s.enter()
		s.move(0, 0)
		s.move(1, 0)
		s.move(2, 0)
		s.move(3, 0)
		s.stay(3, 1, 10) // the focus comes with the next move, 10 s of event time in Boys
		start := time.Now()
		s.move(3, 1)
		m := sensor.next("customer/prediction", 20*time.Second)
		if !bytes.Contains(m.Payload, []byte(fmt.Sprintf(`"customer":{"id":%q}`, id))) {
			t.Fatalf("coupon for another shopper: %s", m.Payload)
		}
		return time.Since(start)
	}
	var calm []time.Duration
	for i := range 5 {
		calm = append(calm, linger(fmt.Sprint(10+i)))
	}

	// 20 wrong-password CONNECTs per second, from two addresses, for 4 s.
	var attempts atomic.Int64
	var floodTime time.Duration
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		start := time.Now()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var wg sync.WaitGroup
		for i := 0; time.Since(start) < 4*time.Second; i++ {
			<-tick.C
			attempts.Add(1)
			wg.Go(func() {
				wrongPassword(sys.app.BrokerAddr(), []string{"127.0.0.1", "127.0.0.3"}[i%2], fmt.Sprint("guess-", i))
			})
		}
		wg.Wait()
		// Until the last attempt was answered: the buckets refill for as long
		// as attempts are being checked, and under load that outlasts the 4 s.
		floodTime = time.Since(start)
	}()
	sys.waitMetric(t, 20, 10*time.Second, "storeflow_broker_connections_refused_total")
	var flooded []time.Duration
	for i := range 5 {
		flooded = append(flooded, linger(fmt.Sprint(20+i)))
	}
	<-floodDone

	// Every attempt was refused and counted; few of them cost a password check.
	sys.waitMetric(t, float64(attempts.Load()), 5*time.Second, "storeflow_broker_connections_refused_total")
	checks := sys.metric(t, "storeflow_broker_password_checks_total", "outcome=failed")
	t.Logf("dwell→coupon latency calm %v, under %d wrong-password CONNECTs in %s %v; %v password checks failed, refused: %v bad_credentials, %v rate_limited, %v auth_busy",
		calm, attempts.Load(), floodTime.Round(time.Millisecond), flooded, checks,
		sys.metric(t, "storeflow_broker_connections_refused_total", "reason=bad_credentials"),
		sys.metric(t, "storeflow_broker_connections_refused_total", "reason=rate_limited"),
		sys.metric(t, "storeflow_broker_connections_refused_total", "reason=auth_busy"))
	// Each of the two addresses gets 10 checks at once and then one per 2 s.
	if limit := 2 * (10 + floodTime.Seconds()/2 + 1); checks > limit {
		t.Errorf("%v wrong passwords checked with PBKDF2 for %d attempts in %s; want at most %.0f",
			checks, attempts.Load(), floodTime.Round(time.Second), limit)
	}
}

// wrongPassword makes one MQTT 3.1.1 CONNECT as user sensor with a wrong
// password from the local address and waits for the answer or the close.
func wrongPassword(addr, local, id string) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	field := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0, 60}, field(id)...)
	body = append(body, field("sensor")...)
	body = append(body, field("wrong")...)
	_, _ = c.Write(append([]byte{0x10, byte(len(body))}, body...))
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, _ = c.Read(make([]byte, 4))
}
