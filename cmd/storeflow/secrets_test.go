package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/proctest"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/central"
	"github.com/storeflow/storeflow/store/csvdir"
	"github.com/storeflow/storeflow/store/world"
)

// secret is the password put in every URL setting; no log line, no error and
// no HTTP answer may show it.
const secret = "s3cret-password"

// A run with user:password in every URL-valued setting (MQTT_HOST,
// PREDICTION_URL, CENTRAL_URL, REDIS_URL), with every peer failing in its own
// way — the prediction service refusing connections, the central answering
// 500 for some customers, Redis down, and in the first run the broker
// refusing too — logs at debug level and returns errors, none of which shows
// the password. The credentials still work: the broker and the central
// accept only them.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	w, err := world.Generate(world.Config{Seed: 3, Reference: time.Now(), Customers: 200, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	if err := csvdir.Write(dataDir, &csvdir.Tables{Catalog: w.Catalog, Preferences: w.Preferences(), History: w.History}); err != nil {
		t.Fatal(err)
	}
	central := failingCentral(t, w.Catalog)
	withCredentials := func(scheme, addr string) string { return scheme + "://user:" + secret + "@" + addr }
	env := map[string]string{
		"DATA_DIR":                   dataDir,
		"MODEL_FILE":                 "",
		"PREDICTION_URL":             withCredentials("http", proctest.FreeAddr(t)), // nothing listens: refused
		"PREDICTION_TIMEOUT":         "200ms",
		"CENTRAL_URL":                withCredentials("http", strings.TrimPrefix(central.URL, "http://")),
		"REDIS_URL":                  withCredentials("redis", proctest.FreeAddr(t)) + "/0", // Redis down
		"HTTP_ADDR":                  proctest.FreeAddr(t),
		"LOG_LEVEL":                  "debug",
		"SIMULATOR_SPEED":            "50",
		"CUSTOMERS_AVERAGE_IN_STORE": "20",
		"MQTT_NAME":                  "secrets-test",
	}

	t.Run("broker refuses", func(t *testing.T) {
		setenv(t, env)
		t.Setenv("MQTT_HOST", withCredentials("tcp", proctest.FreeAddr(t)))
		var stderr proctest.SyncBuffer
		err := run(context.Background(), []string{"run"}, io.Discard, &stderr)
		if err == nil {
			t.Fatal("run succeeded with a broker that refuses connections")
		}
		checkNoSecret(t, "returned error", err.Error())
		checkNoSecret(t, "log", stderr.String())
		for _, want := range []string{"MQTT_HOST=tcp://*****@", "PREDICTION_URL=http://*****@", "CENTRAL_URL=http://*****@",
			"REDIS_URL=redis://*****@", "predictions from a remote service", "redis_unavailable"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, stderr.String())
			}
		}
		if !strings.Contains(err.Error(), "connect to tcp://*****@") {
			t.Errorf("error %q, want it to name the broker without its credentials", err)
		}
	})

	t.Run("peers fail", func(t *testing.T) {
		pw := mosquittotest.PasswordFile(t, "user", secret)
		broker := mosquittotest.Start(t, "allow_anonymous false\npassword_file "+pw)
		setenv(t, env)
		t.Setenv("MQTT_HOST", withCredentials("tcp", broker))
		var stderr proctest.SyncBuffer
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"run"}, io.Discard, &stderr) }()
		stop := func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(30 * time.Second):
				t.Fatal("storeflow did not stop within 30s")
				return nil
			}
		}
		base := "http://" + env["HTTP_ADDR"]
		failures := []string{
			`storeflow_prediction_client_calls_total{outcome="transport"}`,
			`storeflow_central_client_calls_total{outcome="http_5xx"}`,
			`storeflow_cache_errors_total{kind="redis"}`,
		}
		deadline := time.Now().Add(60 * time.Second)
		for !allPositive(base+"/metrics", failures) {
			select {
			case err := <-done:
				t.Fatalf("storeflow stopped: %v\n%s", err, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				_ = stop()
				t.Fatalf("within 60s, not every peer failed at least once (%v):\n%s", failures, stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		readyz := get(t, base+"/readyz")
		if !strings.Contains(readyz, "not ready") {
			t.Errorf("/readyz = %q with Redis down and the prediction service refusing, want not ready", readyz)
		}
		err := stop()
		if err != nil {
			checkNoSecret(t, "returned error", err.Error())
		}
		checkNoSecret(t, "/readyz", readyz)
		checkNoSecret(t, "log", stderr.String())
		for _, want := range []string{"MQTT_HOST=tcp://*****@", "connected to external broker", "scoring failed", "source_unavailable"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, stderr.String())
			}
		}
	})
}

func setenv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func checkNoSecret(t *testing.T, what, text string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), secret) {
			t.Errorf("%s shows the password: %s", what, sc.Text())
		}
	}
}

// failingCentral serves cat's central API to the user "user" with the
// password, and answers 500 for every customer whose id ends in 7.
func failingCentral(t *testing.T, cat *store.Catalog) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	central.NewServer(cat, slog.New(slog.DiscardHandler), nil).Register(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pw, ok := r.BasicAuth(); !ok || user != "user" || pw != secret {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/central/customers/") && strings.HasSuffix(r.URL.Path, "7") {
			http.Error(w, "central down for this one", http.StatusInternalServerError)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// allPositive reports whether every one of series is above zero on the
// metrics page at url (false while the page cannot be read).
func allPositive(url string, series []string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return false
	}
	values := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				values[line[:i]] = v
			}
		}
	}
	for _, s := range series {
		if values[s] <= 0 {
			return false
		}
	}
	return true
}
