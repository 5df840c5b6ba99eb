package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
	"github.com/storeflow/storeflow/internal/mosquittotest"
	"github.com/storeflow/storeflow/internal/redistest"
)

// runApp builds and runs an app on env until the test ends, and returns once
// it is ready.
func runApp(t *testing.T, env map[string]string) *App {
	t.Helper()
	base := map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "off", "SIMULATOR_ENABLED": "false",
		"MODEL_FILE": modeltest.File(t)}
	for k, v := range env {
		base[k] = v
	}
	a, err := newApp(t, base)
	if err != nil {
		t.Fatal(err)
	}
	harness.Start(t, "storeflow", a.Run, a.Ready())
	return a
}

// newApp builds an app on env, the whole environment; a config that does not
// load fails the test.
func newApp(t *testing.T, env map[string]string) (*App, error) {
	t.Helper()
	cfg, err := config.Load(env)
	if err != nil {
		t.Fatal(err)
	}
	return New(context.Background(), cfg, slog.New(slog.DiscardHandler))
}

func readyz(t *testing.T, a *App) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// predictor plays a model server whose readiness route answers status and
// which has the model named by model (none while nil or ""): its V2 model
// readiness route answers 200 for that model and 404, in the protocol's
// error shape, for any other.
func predictor(t *testing.T, status *atomic.Int32, model *atomic.Pointer[string]) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	})
	mux.HandleFunc("GET /v2/models/{name}/ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if name := r.PathValue("name"); model == nil || model.Load() == nil || *model.Load() != name {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":"Model %s not found"}`, name)
			return
		}
		fmt.Fprintf(w, `{"name":%q,"ready":true}`, r.PathValue("name"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// waitReadyz waits until /readyz answers code with a body that contains
// want, and fails the test with the last answer if it does not within 10 s.
func waitReadyz(t *testing.T, a *App, code int, want string) {
	t.Helper()
	var gotCode int
	var gotBody string
	harness.Until(t, 10*time.Second, fmt.Sprintf("GET /readyz = %d %q…", code, want), func() bool {
		gotCode, gotBody = readyz(t, a)
		return gotCode == code && strings.Contains(gotBody, want)
	})
}

// /readyz is 200 only when Redis (REDIS_URL) answers and the prediction
// service (PREDICTION_URL) is ready, and the 503 names what is not.
func TestReadyzChecksDependencies(t *testing.T) {
	t.Run("v2 and redis", func(t *testing.T) {
		redis := redistest.Start(t)
		var status atomic.Int32
		status.Store(http.StatusOK)
		var model atomic.Pointer[string]
		model.Store(new("coupon"))
		pred := predictor(t, &status, &model)
		a := runApp(t, map[string]string{"REDIS_URL": redis.URL(), "PREDICTION_URL": pred.URL, "PREDICTION_PROTOCOL": "v2"})
		waitReadyz(t, a, http.StatusOK, "ready") // the model's readiness is asked in the background
		steps := []struct {
			name   string
			change func()
			code   int
			want   string
		}{
			{"all up", func() {}, http.StatusOK, "ready"},
			{"model not ready", func() { status.Store(http.StatusServiceUnavailable) }, http.StatusServiceUnavailable, "not ready: prediction: GET " + pred.URL + "/v2/health/ready: 503"},
			{"model ready again", func() { status.Store(http.StatusOK) }, http.StatusOK, "ready"},
			{"redis down", redis.Stop, http.StatusServiceUnavailable, "not ready: redis: "},
			{"redis back", redis.Restart, http.StatusOK, "ready"},
		}
		for _, s := range steps {
			s.change()
			if code, body := readyz(t, a); code != s.code || !strings.HasPrefix(body, s.want) {
				t.Errorf("%s: GET /readyz = %d %q, want %d %q…", s.name, code, body, s.code, s.want)
			}
		}
	})
	t.Run("score", func(t *testing.T) {
		var status atomic.Int32
		status.Store(http.StatusNotFound) // a /score service has no readiness route: any answer will do
		pred := predictor(t, &status, nil)
		a := runApp(t, map[string]string{"PREDICTION_URL": pred.URL})
		if code, body := readyz(t, a); code != http.StatusOK {
			t.Errorf("GET /readyz = %d %q with the /score service up, want 200", code, body)
		}
		status.Store(http.StatusBadGateway)
		if code, body := readyz(t, a); code != http.StatusServiceUnavailable || !strings.Contains(body, "prediction: ") || !strings.Contains(body, "502") {
			t.Errorf("GET /readyz = %d %q with the service failing, want 503 naming prediction", code, body)
		}
		pred.Close()
		if code, body := readyz(t, a); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: prediction: score ") {
			t.Errorf("GET /readyz = %d %q with the service gone, want 503 naming prediction", code, body)
		}
	})
	t.Run("v2 model not on the server", func(t *testing.T) {
		var status atomic.Int32
		status.Store(http.StatusOK)
		var model atomic.Pointer[string]
		model.Store(new("another"))
		pred := predictor(t, &status, &model)
		a := runApp(t, map[string]string{"PREDICTION_URL": pred.URL, "PREDICTION_PROTOCOL": "v2", "PREDICTION_MODEL": "coupon"})
		notOnServer := `not ready: prediction: model "coupon" (PREDICTION_MODEL) is not on the server: GET ` + pred.URL + "/v2/models/coupon/ready: 404"
		waitReadyz(t, a, http.StatusServiceUnavailable, notOnServer)
		model.Store(new("coupon"))
		waitReadyz(t, a, http.StatusOK, "ready")
		model.Store(nil)
		waitReadyz(t, a, http.StatusServiceUnavailable, notOnServer)
	})
	t.Run("memory cache, in-process model", func(t *testing.T) {
		a := runApp(t, nil)
		if code, body := readyz(t, a); code != http.StatusOK {
			t.Errorf("GET /readyz = %d %q, want 200", code, body)
		}
	})
}

// /readyz is 503 while the external broker (MQTT_HOST) is down, saying so,
// and 200 again once storeflow has reconnected: a real mosquitto stopped and
// started again on the same port.
func TestReadyzFollowsTheExternalBroker(t *testing.T) {
	m := mosquittotest.New(t, "allow_anonymous true")
	host, port, _ := net.SplitHostPort(m.Addr())
	a := runApp(t, map[string]string{"MQTT_HOST": host, "MQTT_PORT": port})
	if code, body := readyz(t, a); code != http.StatusOK {
		t.Fatalf("GET /readyz = %d %q connected, want 200", code, body)
	}
	m.Stop()
	const want = "not ready: broker: disconnected from the external broker (MQTT_HOST) for "
	var code int
	var body string
	harness.Until(t, 10*time.Second, "/readyz 503 with the broker stopped", func() bool {
		code, body = readyz(t, a)
		return code == http.StatusServiceUnavailable
	})
	t.Logf("broker stopped: GET /readyz = %d %q", code, body)
	if !strings.HasPrefix(body, want) {
		t.Errorf("GET /readyz = %q with the broker stopped, want %q…", body, want)
	}
	m.Start()
	harness.Until(t, 10*time.Second, "/readyz 200 after the broker came back", func() bool {
		code, body = readyz(t, a)
		return code == http.StatusOK
	})
}
