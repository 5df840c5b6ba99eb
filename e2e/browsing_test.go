package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/proctest"
)

// A scripted shopper who walks the front aisle for half a minute without
// stopping is browsing: exactly one customer/browsing event, in the original
// decision service's shape, reaches a staff screen — the real mosquitto_sub,
// with a persistent session so that nothing published while it is away is
// missed. Walking on for another minute raises no second alert; lingering in
// Boys afterwards focuses, which proves every move before it was handled.
func TestWanderingShopperAlertsStaff(t *testing.T) {
	sub := proctest.FindTool(t, "mosquitto_sub is not installed: apt-get install -y mosquitto-clients", "mosquitto_sub", "/usr/bin/mosquitto_sub")
	sys := startSystem(t, nil) // the defaults: BROWSING_AFTER=30s, BROWSING_MOVES=20
	_, port, _ := net.SplitHostPort(sys.app.BrokerAddr())
	staff := []string{"-h", "127.0.0.1", "-p", port, "-q", "1", "-c", "-i", "staff-1", "-t", "customer/browsing", "-V", "311"}
	if out, err := exec.Command(sub, append(staff, "-E")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_sub -E: %v: %s", err, out)
	}
	sys.waitMetric(t, 0, 5*time.Second, "storeflow_broker_connections")

	sensor := dial(t, sys.app.BrokerAddr(), "sensor", "")
	s := &script{cl: sensor, id: "42", ts: time.Now().Unix()}
	wander := func(n int) { // up and down the front aisle (row 0: no department)
		for i := range n {
			x := i % 10
			if x > 5 {
				x = 10 - x
			}
			s.move(x, 0)
		}
	}
	s.enter()
	wander(31) // 30 s and 30 moves to another position after the first
	alertTS := s.ts
	wander(60)
	s.move(3, 1)
	s.stay(3, 1, 12) // Boys, past the dwell
	sys.waitMetric(t, 1, 10*time.Second, "storeflow_focus_detected_total")
	if n := sys.metric(t, "storeflow_browsing_detected_total"); n != 1 {
		t.Fatalf("storeflow_browsing_detected_total = %v, want 1", n)
	}
	// A marker after storeflow's events, at QoS 1 as storeflow publishes (an
	// offline session is kept QoS 1 messages only): the staff screen must
	// read the alert and the marker, nothing else. Not necessarily in that
	// order: the embedded broker hands a returning session what it kept in
	// the order of the second it arrived in, not within one second.
	const marker = `{"id":"0","ts":1}`
	if tok := sensor.c.Publish("customer/browsing", 1, false, marker); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish the marker: %v", tok.Error())
	}

	out, err := exec.Command(sub, append(staff, "-C", "2", "-W", "10")...).Output()
	if err != nil {
		t.Fatalf("mosquitto_sub: %v after %q", err, out)
	}
	var lines []string
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	want := fmt.Sprintf(`{"id":"42","ts":%d,"x":0,"y":0}`, alertTS)
	slices.Sort(lines)
	if len(lines) != 2 || lines[1] != want || lines[0] != marker {
		t.Fatalf("the staff screen read %q, want %s and %s", lines, want, marker)
	}
	if b, err := event.DecodeBrowsing([]byte(lines[1])); err != nil || b.ID != "42" || b.TS != alertTS {
		t.Fatalf("DecodeBrowsing(%s) = %+v, %v", lines[1], b, err)
	}
}
