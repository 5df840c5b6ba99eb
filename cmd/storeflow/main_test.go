package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/redistest"
)

func TestEnvListsVariablesWithDefaults(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"env"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MQTT_PORT=1883\n", "STORE_HEIGHT=10\n", "FOCUS_GAP=20s\n", "COUPON_PREDICTION_TOPIC_NAME=customer/prediction\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("storeflow env lacks %q", want)
		}
	}
}

// storeflow env shows the values in effect — what the environment sets,
// secrets masked, with the default beside it — not only the defaults, and
// checks them as a start would.
func TestEnvShowsTheValuesInEffect(t *testing.T) {
	unsetenv(t, "BROKER_LISTEN_ADDR", "MQTT_HOST", "HTTP_ADDR", "FOCUS_GAP")
	for k, v := range map[string]string{"MQTT_PORT": "1884", "MQTT_PASSWORD": "hunter2", "REDIS_URL": "redis://u:hunter2@cache:6379/0",
		"PREDICTION_HEADERS": "Authorization=Bearer hunter2", "FOCUS_DWELL": "12s", "LOG_FILE": ""} {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"env"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"MQTT_PORT=1884\t# set; default 1883\n",
		"MQTT_PASSWORD=*****\t# set; default (empty)\n",
		"REDIS_URL=redis://*****@cache:6379/0\t# set; default (empty)\n",
		"PREDICTION_HEADERS=*****\t# set; default (empty)\n",
		"FOCUS_DWELL=12s\t# set; default 10s\n",
		"LOG_FILE=\t# set; default (empty)\n",
		"FOCUS_GAP=20s\n",
		"HTTP_ADDR=127.0.0.1:8000\n",
		"BROKER_LISTEN_ADDR=\t# unset: 127.0.0.1:1884, from MQTT_PORT\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("storeflow env lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("storeflow env shows a secret:\n%s", out.String())
	}

	// A bad value: everything is still listed, and the error names it.
	t.Setenv("FOCUS_DWELL", "soon")
	out.Reset()
	err := run(context.Background(), []string{"env"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `FOCUS_DWELL="soon"`) {
		t.Errorf("storeflow env with FOCUS_DWELL=soon: error %v, want one naming it", err)
	}
	if !strings.Contains(out.String(), "FOCUS_DWELL=soon\t# set; default 10s\n") || !strings.Contains(out.String(), "MQTT_PORT=1884\t") {
		t.Errorf("storeflow env with a bad value listed:\n%s", out.String())
	}
}

// unsetenv removes the variables for the test; t.Setenv restores them after.
func unsetenv(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"fly"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `"fly"`) || !strings.Contains(errOut.String(), "usage:") {
		t.Fatalf("err = %v, stderr = %q", err, errOut.String())
	}
}

// bench runs the real wiring and reports every coupon it expects, and with
// --json ends with one object whose real-time count balances.
func TestBench(t *testing.T) {
	t.Setenv("MQTT_HOST", "")
	t.Setenv("MODEL_FILE", modeltest.File(t))
	var out, errOut bytes.Buffer
	args := []string{"bench", "--shoppers", "200", "--realtime-shoppers", "300", "--duration", "3s", "--json"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`focus\s+200 detected, 200 coupons published`).MatchString(out.String()) {
		t.Fatalf("bench output:\n%s", out.String())
	}
	for _, want := range []string{"ceiling", "moves/s", "p50", "allocs per move", "ratio", "real time", "lag", "balanced"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out.String())
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	for _, key := range []string{"ceiling_moves_per_s", "pipeline_moves_per_s", "ratio", "p99_focus_to_coupon_ms", "dropped", "rss_bytes_per_shopper"} {
		if _, ok := r[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, lines[len(lines)-1])
		}
	}
	num := func(key string) float64 {
		t.Helper()
		v, ok := r[key].(float64)
		if !ok {
			t.Fatalf("%s = %v, want a number", key, r[key])
		}
		return v
	}
	if num("ratio") <= 0 || num("ceiling_moves_per_s") <= 0 || num("pipeline_moves_per_s") <= 0 {
		t.Errorf("ratio %v, ceiling %v, pipeline %v moves/s: want > 0", r["ratio"], r["ceiling_moves_per_s"], r["pipeline_moves_per_s"])
	}
	num("dropped")
	published, accepted, droppedIntake, rejected := num("published"), num("accepted"), num("dropped_intake"), num("rejected")
	if published <= 0 || published != accepted+droppedIntake+rejected || r["balanced"] != true {
		t.Errorf("published %v != accepted %v + dropped at intake %v + rejected %v", published, accepted, droppedIntake, rejected)
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "-shoppers", "0"},
		{"bench", "--realtime-shoppers", "-1"},
		{"bench", "--duration", "10ms"},
		{"bench", "--tcp", "--publishers", "0"},
		{"bench", "--tcp", "--visits", "0"},
		{"bench", "--tcp", "--paced-fraction", "1.5"},
		{"bench", "--tcp", "--cpuprofile", "cpu.out"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("bench accepted %q", args[1:])
		}
	}
}

// LOG_FORMAT=json writes one JSON object per line to stderr and, with
// LOG_FILE, the same lines to the file.
func TestLoggerFormatAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "messages.log")
	cfg, err := config.Load(map[string]string{"LOG_FORMAT": "json", "LOG_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	log, closeLog, err := newLogger(cfg, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "customer_id", "7")
	closeLog()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string][]byte{"stderr": stderr.Bytes(), "LOG_FILE": file} {
		var rec map[string]any
		if err := json.Unmarshal(bytes.TrimSpace(out), &rec); err != nil || rec["msg"] != "hello" || rec["customer_id"] != "7" {
			t.Errorf("%s holds %q, want one JSON record of the message", name, out)
		}
	}
	if _, err := config.Load(map[string]string{"LOG_FORMAT": "xml"}); err == nil || !strings.Contains(err.Error(), "LOG_FORMAT") {
		t.Errorf("LOG_FORMAT=xml: %v, want an error naming it", err)
	}
	cfg.LogFile = filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")
	if _, _, err := newLogger(cfg, &stderr); err == nil || !strings.Contains(err.Error(), "LOG_FILE") {
		t.Errorf("unwritable LOG_FILE: %v, want an error naming it", err)
	}
}

// The first signal cancels (a graceful shutdown), the second exits at once.
func TestSignals(t *testing.T) {
	sig := make(chan os.Signal, 2)
	canceled, exited := make(chan struct{}), make(chan struct{})
	go waitSignals(sig, func() { close(canceled) }, func() { close(exited) })
	sig <- os.Interrupt
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the first signal did not cancel")
	}
	select {
	case <-exited:
		t.Fatal("exited on the first signal")
	default:
	}
	sig <- syscall.SIGTERM
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the second signal did not exit")
	}
}

// A port already in use stops the start with an error that names the
// setting behind it — MQTT_PORT when BROKER_LISTEN_ADDR is not set, HTTP_ADDR
// also at its default — says how to move it and, for the MQTT port, how to
// use the broker that holds it instead (apt-get install mosquitto starts one
// on 1883). It used to name BROKER_LISTEN_ADDR, which the user never set.
func TestBusyPortSaysWhichSettingMovesIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy string            // the address held by another program
		env  map[string]string // "" unsets; "BUSY" is the busy address, "BUSYPORT" its port
		want []string
		not  []string
	}{
		{"default MQTT port", "127.0.0.1:1883", map[string]string{"MQTT_PORT": "", "BROKER_LISTEN_ADDR": ""},
			[]string{"listen on 127.0.0.1:1883 (the embedded broker, MQTT_PORT)", "address already in use",
				"set MQTT_PORT to a free port (MQTT_PORT=1884)", "use the broker that holds it instead of the embedded one: MQTT_HOST=127.0.0.1"},
			[]string{"BROKER_LISTEN_ADDR", "MQTT_HOST=127.0.0.1 MQTT_PORT"}},
		{"MQTT_PORT", "127.0.0.1:0", map[string]string{"MQTT_PORT": "BUSYPORT", "BROKER_LISTEN_ADDR": ""},
			[]string{"(the embedded broker, MQTT_PORT)", "set MQTT_PORT to a free port", "MQTT_HOST=127.0.0.1 MQTT_PORT=BUSYPORT"},
			[]string{"BROKER_LISTEN_ADDR"}},
		{"BROKER_LISTEN_ADDR", "127.0.0.1:0", map[string]string{"BROKER_LISTEN_ADDR": "BUSY"},
			[]string{"(the embedded broker, BROKER_LISTEN_ADDR)", "set BROKER_LISTEN_ADDR to a free address", "MQTT_HOST=127.0.0.1 MQTT_PORT=BUSYPORT"},
			nil},
		{"default HTTP port", "127.0.0.1:8000", map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": ""},
			[]string{"listen on 127.0.0.1:8000 (HTTP_ADDR, by default)", "address already in use", "HTTP_ADDR=127.0.0.1:8001", "HTTP_ADDR=off"},
			nil},
		{"HTTP_ADDR", "127.0.0.1:0", map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "BUSY"},
			[]string{"(HTTP_ADDR)", "set HTTP_ADDR to a free address (HTTP_ADDR=127.0.0.1:8001)"},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy := holdPort(t, tc.busy)
			_, port, _ := net.SplitHostPort(busy)
			t.Setenv("MQTT_HOST", "")
			t.Setenv("MODEL_FILE", modeltest.File(t))
			for k, v := range tc.env {
				if v == "" {
					unsetenv(t, k)
					continue
				}
				t.Setenv(k, strings.ReplaceAll(strings.ReplaceAll(v, "BUSYPORT", port), "BUSY", busy))
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"run"}, &out, &errOut)
			if err == nil {
				t.Fatalf("start with %s busy succeeded", busy)
			}
			t.Logf("storeflow: %v", err)
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "BUSYPORT", port); !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error names %q", n)
				}
			}
		})
	}
}

// holdPort listens on addr until the test ends and returns the address. A
// fixed port already held by another program (a system mosquitto on 1883)
// is busy all the same.
func holdPort(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) && !strings.HasSuffix(addr, ":0") {
		return addr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// bench --redis plays the visits through both dwell states, on REDIS_URL
// or on a redis-server it starts, and reports one script call per event.
func TestBenchRedis(t *testing.T) {
	for name, url := range map[string]string{"REDIS_URL": redistest.Start(t).URL(), "redis-server from PATH": ""} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("MQTT_HOST", "")
			t.Setenv("MODEL_FILE", modeltest.File(t))
			t.Setenv("REDIS_URL", url)
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{"bench", "--redis", "--shoppers", "50"}, &out, &errOut); err != nil {
				t.Fatalf("bench --redis: %v\n%s", err, errOut.String())
			}
			for _, want := range []*regexp.Regexp{
				regexp.MustCompile(`(?m)^memory .* 50 focus, 50 coupons`),
				regexp.MustCompile(`(?m)^redis .* 50 focus, 50 coupons`),
				regexp.MustCompile(`per move: 1\.0\d+ script calls \(one per event\), 0\.0\d+ round trips`),
				regexp.MustCompile(`ratio   redis/memory \d`),
			} {
				if !want.MatchString(out.String()) {
					t.Errorf("bench --redis output lacks %s:\n%s", want, out.String())
				}
			}
		})
	}
}
