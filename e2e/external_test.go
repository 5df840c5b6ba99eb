package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/proctest"
)

// Users of the test's mosquitto: the app, and sensors and phones outside it.
const (
	appUser, appPassword     = "storeflow", "storeflow-pw"
	phoneUser, phonePassword = "phone", "phone-pw"
)

// startExternal starts a mosquitto that refuses anonymous clients, and the
// app connected to it with its credentials. It returns the app and the
// broker's address.
func startExternal(t *testing.T, extra map[string]string) (*system, string) {
	t.Helper()
	pw := mosquittotest.PasswordFile(t, appUser, appPassword, phoneUser, phonePassword)
	addr := mosquittotest.Start(t, "allow_anonymous false\npassword_file "+pw)
	environ := map[string]string{
		"MQTT_USERNAME":     appUser,
		"MQTT_PASSWORD":     appPassword,
		"SIMULATOR_ENABLED": "false",
		"HTTP_ADDR":         "127.0.0.1:0",
	}
	maps.Copy(environ, extra)
	sys := startOn(t, addr, environ)
	if a := sys.app.BrokerAddr(); a != "" {
		t.Fatalf("BrokerAddr() = %q with MQTT_HOST set: an embedded broker is running", a)
	}
	return sys, addr
}

// In external mode the whole flow runs through mosquitto: a sensor's lingering
// shopper in Boys gets the focus event and a Boys coupon.
func TestExternalBrokerLingerInBoysGetsBoysCoupon(t *testing.T) {
	sys, addr := startExternal(t, nil)
	obs := dialAs(t, addr, "observer", phoneUser, phonePassword, "customer/#")
	sensor := dialAs(t, addr, "sensor", phoneUser, phonePassword, "")

	s := lingerInBoys(t, sys, sensor)
	id := s.id

	focus := obs.next("customer/focus", 10*time.Second)
	var f struct {
		ID  string
		Dep string
		TS  int64
	}
	if err := json.Unmarshal(focus.Payload, &f); err != nil {
		t.Fatalf("focus payload %s: %v", focus.Payload, err)
	}
	if f.ID != id || f.Dep != "Boys" {
		t.Fatalf("focus = %s, want id %s and dep Boys", focus.Payload, id)
	}

	p := obs.nextOffer(t, 10*time.Second)
	if p.Customer.ID != id || p.Coupon.Department != "Boys" || p.TS != f.TS {
		t.Fatalf("prediction = %s, want customer %s, a Boys coupon, ts %d", p.raw, id, f.TS)
	}
	s.exit()
	sys.waitMetric(t, 1, 5*time.Second, "storeflow_focus_outcomes_total", "outcome=published")
}

// The simulator feeds the external broker; predictions for many shoppers come
// back through it, and the README's mosquitto_sub watch command shows them.
func TestExternalBrokerSimulatorWatchedWithMosquittoSub(t *testing.T) {
	sys, addr := startExternal(t, map[string]string{
		"SIMULATOR_ENABLED":          "true",
		"SIMULATOR_SPEED":            "200",
		"SIMULATOR_SEED":             "7",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
	})
	host, port, _ := net.SplitHostPort(addr)

	// The real mosquitto_sub, as in the README, with credentials: three
	// predictions, then it exits (or gives up after 30 s).
	subBin := proctest.FindTool(t, "mosquitto_sub is not installed: apt-get install -y mosquitto-clients", "mosquitto_sub", "/usr/bin/mosquitto_sub")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, subBin, "-h", host, "-p", port, "-u", phoneUser, "-P", phonePassword,
		"-t", "customer/prediction", "-C", "3", "-W", "30")
	var subOut, subErr bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subErr
	if err := sub.Start(); err != nil {
		t.Fatalf("start mosquitto_sub: %v", err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()

	obs := dialAs(t, addr, "observer", phoneUser, phonePassword, "customer/prediction")
	obs.predictionsFor(t, 5, 60*time.Second)

	select {
	case err := <-subDone:
		if err != nil {
			t.Fatalf("mosquitto_sub: %v\nstdout:\n%s\nstderr:\n%s", err, &subOut, &subErr)
		}
	case <-ctx.Done():
		t.Fatalf("mosquitto_sub still running after 40s\nstdout:\n%s", &subOut)
	}
	lines := strings.Split(strings.TrimRight(subOut.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("mosquitto_sub printed %d lines, want 3 predictions:\n%s", len(lines), &subOut)
	}
	for _, l := range lines {
		checkPredictionShape(t, []byte(l))
	}
	if n := sys.metric(t, "storeflow_events_rejected_total"); n != 0 {
		t.Errorf("the simulator's own events were rejected %v times", n)
	}
}
