package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/proctest"
)

// storeflow healthcheck, the image's HEALTHCHECK, against the running
// storeflow: 0 while /readyz answers 200, 1 with the reason while it answers
// 503 (here its V2 prediction service is not ready) and when nothing answers.
func TestHealthcheckProbesTheRunningApp(t *testing.T) {
	var modelStatus atomic.Int32
	modelStatus.Store(http.StatusOK)
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(modelStatus.Load())) // a model server's /v2/health/ready
	}))
	t.Cleanup(model.Close)
	httpAddr := proctest.FreeAddr(t)
	unsetenv(t, "MQTT_HOST", "MODEL_FILE")
	setenv(t, map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": httpAddr, "SIMULATOR_ENABLED": "false",
		"PREDICTION_URL": model.URL, "PREDICTION_PROTOCOL": "v2", "LOG_LEVEL": "warn"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- run(ctx, []string{"run"}, io.Discard, io.Discard) }()
	waitReady(t, httpAddr, exited)

	probe := func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"healthcheck"}, args...), &out, io.Discard)
		return out.String(), err
	}
	if out, err := probe(); err != nil || out != "ready\n" {
		t.Errorf("healthcheck, ready: %q, %v; want ready and no error", out, err)
	}
	if out, err := probe("--path", "/healthz", "--timeout", "1s"); err != nil || out != "ok\n" {
		t.Errorf("healthcheck --path /healthz: %q, %v; want ok and no error", out, err)
	}

	modelStatus.Store(http.StatusServiceUnavailable)
	if _, err := probe(); err == nil || !strings.Contains(err.Error(), "/readyz: 503 not ready: prediction: ") {
		t.Errorf("healthcheck with the model server not ready: %v, want an error with the 503 and its reason", err)
	}
	if _, err := probe("--path", "/healthz"); err != nil {
		t.Errorf("healthcheck --path /healthz with the model server not ready: %v, want none (the process runs)", err)
	}

	cancel()
	harness.Done(t, 20*time.Second, "storeflow stopped", exited)
	_, err := probe()
	if err == nil || !regexp.MustCompile(`GET http://\S+/readyz \(HTTP_ADDR\): .*connection refused`).MatchString(err.Error()) {
		t.Errorf("healthcheck with storeflow stopped: %v, want connection refused naming HTTP_ADDR", err)
	}
}

func TestProbeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8000": "127.0.0.1:8000", ":8000": "127.0.0.1:8000", "[::]:8000": "[::1]:8000",
		"127.0.0.1:8000": "127.0.0.1:8000", "10.1.2.3:8000": "10.1.2.3:8000", "shop.example:80": "shop.example:80",
	} {
		if got := probeAddr(in); got != want {
			t.Errorf("probeAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// The image builds with exactly the Go version go.mod asks for: a floating
// golang:1.26 tag gives whichever 1.26.x is current.
func TestDockerfilePinsGoModsGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	from := regexp.MustCompile(`(?m)^FROM golang:(\S+) AS build$`).FindSubmatch(docker)
	if goLine == nil || from == nil {
		t.Fatalf("go.mod's go line %q, Dockerfile's build stage %q: want both", goLine, from)
	}
	if string(from[1]) != string(goLine[1]) {
		t.Errorf("Dockerfile builds with golang:%s, go.mod says go %s: pin golang:%s", from[1], goLine[1], goLine[1])
	}
	joined := strings.ReplaceAll(string(docker), "\\\n", " ") // continuation lines
	if !regexp.MustCompile(`(?m)^HEALTHCHECK .*CMD \["/usr/local/bin/storeflow", "healthcheck"\]$`).MatchString(joined) {
		t.Error("Dockerfile has no HEALTHCHECK running storeflow healthcheck")
	}
}
