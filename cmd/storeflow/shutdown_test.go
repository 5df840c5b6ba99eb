package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/proctest"
)

// TestMain lets a test run this test binary as the storeflow command itself
// (STOREFLOW_RUN_MAIN=1), so signals reach the real main.
func TestMain(m *testing.M) {
	if os.Getenv("STOREFLOW_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A SIGTERM of storeflow closes every MQTT client the way its protocol
// version allows: MQTT 5 clients get DISCONNECT (server shutting down), 3.1.1
// and 3.1 clients, which have no DISCONNECT from the server, see the
// connection close. The clients are the real mosquitto_sub. Before, the
// embedded broker sent DISCONNECT to 3.1.1 and 3.1 clients too, and
// mosquitto_sub printed "A network protocol error occurred" and exited 2.
func TestSIGTERMClosesEveryProtocolVersionCleanly(t *testing.T) {
	sub := proctest.FindTool(t, "mosquitto_sub is not installed: apt-get install -y mosquitto-clients", "mosquitto_sub", "/usr/bin/mosquitto_sub")
	stdbuf := proctest.FindTool(t, "stdbuf (coreutils) is not installed", "stdbuf")
	brokerAddr, httpAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(brokerAddr)

	sf, _, exited := startStoreflow(t, httpAddr, "BROKER_LISTEN_ADDR="+brokerAddr, "MODEL_FILE="+modeltest.File(t), "LOG_LEVEL=warn")

	// Each phone waits 5 s for a message (-W), then exits 27 by itself: long
	// enough to see how it takes the shutdown.
	type phone struct {
		version string
		cmd     *exec.Cmd
		out     *proctest.SyncBuffer
		done    chan error
	}
	var phones []*phone
	for _, v := range []string{"31", "311", "5"} {
		p := &phone{version: v, out: new(proctest.SyncBuffer), done: make(chan error, 1)}
		// stdbuf: mosquitto_sub's output is a pipe here, which stdio would
		// buffer until exit; the test waits for its SUBACK line.
		p.cmd = exec.Command(stdbuf, "-oL", sub, "-h", "127.0.0.1", "-p", port, "-V", v, "-i", "phone-v"+v, "-W", "5", "-d", "-t", "customer/prediction")
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() { _ = p.cmd.Process.Kill() })
		phones = append(phones, p)
	}
	for _, p := range phones {
		harness.Until(t, 10*time.Second, "mosquitto_sub -V "+p.version+" subscribed", func() bool { return strings.Contains(p.out.String(), "received SUBACK") })
	}

	if err := sf.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	harness.Done(t, 15*time.Second, "storeflow stopped after SIGTERM", exited)
	for _, p := range phones {
		var err error
		select {
		case err = <-p.done:
		case <-time.After(15 * time.Second):
			t.Fatalf("mosquitto_sub -V %s still running 15s after storeflow stopped", p.version)
		}
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		}
		// MQTT 5: DISCONNECT 0x8B ends mosquitto_sub with 0. 3.1 and 3.1.1:
		// it tries to reconnect until its -W timeout (27).
		want := map[string]int{"31": 27, "311": 27, "5": 0}[p.version]
		if code != want || strings.Contains(p.out.String(), "rror") {
			t.Errorf("mosquitto_sub -V %s: exit %d, output %q; want exit %d and no error", p.version, code, p.out.String(), want)
		}
	}
}

// startStoreflow runs this test binary as storeflow (STOREFLOW_RUN_MAIN)
// with the simulator off, HTTP on httpAddr and env on top, waits until it
// is ready, and kills it when the test ends (its output, also returned,
// logged if the test failed). exited receives Wait's result.
func startStoreflow(t *testing.T, httpAddr string, env ...string) (sf *exec.Cmd, out *proctest.SyncBuffer, exited <-chan error) {
	t.Helper()
	sf = exec.Command(os.Args[0])
	sf.Env = append(append(os.Environ(), "STOREFLOW_RUN_MAIN=1", "MQTT_HOST=", "HTTP_ADDR="+httpAddr, "SIMULATOR_ENABLED=false"), env...)
	out = &proctest.SyncBuffer{}
	sf.Stdout, sf.Stderr = out, out
	if err := sf.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sf.Wait() }()
	t.Cleanup(func() {
		_ = sf.Process.Kill()
		if t.Failed() {
			t.Logf("storeflow's output:\n%s", out)
		}
	})
	waitReady(t, httpAddr, done)
	return sf, out, done
}

// waitReady waits until storeflow's /readyz answers 200.
func waitReady(t *testing.T, httpAddr string, exited <-chan error) {
	t.Helper()
	harness.Until(t, 20*time.Second, "storeflow ready on "+httpAddr, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("storeflow exited before it was ready: %v", err)
		default:
		}
		resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
