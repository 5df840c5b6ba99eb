package app

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/harness"
	"github.com/storeflow/storeflow/internal/modeltest"
)

// The live view follows the app's own broker connection, and a stream idle
// for longer than HTTP_READ_TIMEOUT and HTTP_WRITE_TIMEOUT goes on (each
// write has its own deadline; the request's read deadline ends with it).
func TestLiveViewFollowsTheBrokerPastTheReadTimeout(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	a := runApp(t, map[string]string{"HTTP_ADDR": "127.0.0.1:0", "HTTP_READ_TIMEOUT": readTimeout.String(), "HTTP_WRITE_TIMEOUT": readTimeout.String()})
	url := "http://" + a.HTTPAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	opened := time.Now()
	for time.Since(opened) < 3*readTimeout { // a stream idle past the read timeout
		time.Sleep(readTimeout / 10)
	}
	if err := a.Broker().Publish(ctx, "customer/enter", []byte(`{"id":"7","ts":100}`)); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended after %v, before the enter event", time.Since(opened).Round(time.Millisecond))
			}
			if l == `data: {"id":"7","ts":100}` {
				goto snapshot
			}
		case <-ctx.Done():
			t.Fatal("no enter event within 20s")
		}
	}
snapshot:
	r, err := http.Get(url + "/api/store")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var s struct{ Shoppers []struct{ ID string } }
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if len(s.Shoppers) != 1 || s.Shoppers[0].ID != "7" {
		t.Errorf("shoppers %+v, want 7", s.Shoppers)
	}
}

func TestLiveViewOff(t *testing.T) {
	a := runApp(t, map[string]string{"HTTP_ADDR": "127.0.0.1:0", "VIEW_ENABLED": "false"})
	for _, path := range []string{"/api/store", "/api/events"} {
		r, err := http.Get("http://" + a.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("VIEW_ENABLED=false: GET %s = %d, want 404", path, r.StatusCode)
		}
	}
}

// An open page does not hold the shutdown: its stream ends and Run returns
// without error (http.Server.Shutdown waits for handlers, and a stream's
// handler returns only when told to).
func TestShutdownWithAPageOpen(t *testing.T) {
	cfg, err := config.Load(map[string]string{"BROKER_LISTEN_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"SIMULATOR_ENABLED": "false", "MODEL_FILE": modeltest.File(t)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stop := harness.Start(t, "storeflow", a.Run, a.Ready())
	resp, err := http.Get("http://" + a.HTTPAddr() + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		close(ended)
	}()
	stop(4 * time.Second) // under the server's 5 s shutdown bound
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the page's stream still open after Run returned")
	}
}
