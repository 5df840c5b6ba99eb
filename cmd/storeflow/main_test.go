package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/modeltest"
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

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"fly"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `"fly"`) || !strings.Contains(errOut.String(), "usage:") {
		t.Fatalf("err = %v, stderr = %q", err, errOut.String())
	}
}

// bench runs the real wiring and reports every coupon it expects.
func TestBench(t *testing.T) {
	t.Setenv("MQTT_HOST", "")
	t.Setenv("MODEL_FILE", modeltest.File(t))
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "-shoppers", "200"}, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`focus\s+200 detected, 200 coupons published`).MatchString(out.String()) {
		t.Fatalf("bench output:\n%s", out.String())
	}
	for _, want := range []string{"events/s", "p50", "allocs per event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchRejectsBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "-shoppers", "0"}, &out, &errOut); err == nil {
		t.Fatal("bench accepted -shoppers 0")
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
