package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
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

// predictor plays a model server whose readiness route answers status.
func predictor(t *testing.T, status *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/health/ready" {
			w.WriteHeader(int(status.Load()))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// /readyz is 200 only when Redis (REDIS_URL) answers and the prediction
// service (PREDICTION_URL) is ready, and the 503 names what is not.
func TestReadyzChecksDependencies(t *testing.T) {
	t.Run("v2 and redis", func(t *testing.T) {
		redis := redistest.Start(t)
		var status atomic.Int32
		status.Store(http.StatusOK)
		pred := predictor(t, &status)
		a := runApp(t, map[string]string{"REDIS_URL": redis.URL(), "PREDICTION_URL": pred.URL, "PREDICTION_PROTOCOL": "v2"})
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
		pred := predictor(t, &status)
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
	t.Run("memory cache, in-process model", func(t *testing.T) {
		a := runApp(t, nil)
		if code, body := readyz(t, a); code != http.StatusOK {
			t.Errorf("GET /readyz = %d %q, want 200", code, body)
		}
	})
}
