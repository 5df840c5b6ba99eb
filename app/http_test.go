package app

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// closeWithin is how long a test waits for the server to close a connection
// whose timeout (a few hundred milliseconds) has passed.
const closeWithin = 5 * time.Second

// rawConn opens a TCP connection to the app's HTTP endpoints.
func rawConn(t *testing.T, a *App) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads from c until the server closes it; it fails the test if
// c is still open after within.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", within)
	}
}

// get sends a keep-alive GET on c and reads the answer.
func get(t *testing.T, c net.Conn, path string) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(closeWithin))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: storeflow\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A client that sends its headers and then a body far slower than it
// promised is cut off at HTTP_READ_TIMEOUT (it used to hold the connection
// for as long as it liked).
func TestHTTPClosesSlowBodies(t *testing.T) {
	a := runApp(t, map[string]string{"HTTP_ADDR": "127.0.0.1:0", "HTTP_READ_TIMEOUT": "300ms", "HTTP_TEST_ENDPOINTS": "true"})
	for _, path := range []string{"/score", "/mock_entry"} {
		t.Run(path, func(t *testing.T) {
			c := rawConn(t, a)
			if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: storeflow\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", path); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, c, closeWithin)
		})
	}
}

// A keep-alive connection with no next request is closed after
// HTTP_IDLE_TIMEOUT (it used to stay open for good).
func TestHTTPClosesIdleConnections(t *testing.T) {
	a := runApp(t, map[string]string{"HTTP_ADDR": "127.0.0.1:0", "HTTP_IDLE_TIMEOUT": "300ms"})
	c := rawConn(t, a)
	if code := get(t, c, "/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz = %d", code)
	}
	waitClosed(t, c, closeWithin)
}

// Beyond HTTP_MAX_CONNECTIONS open connections a new one is closed at once
// and counted; when one closes, there is room again.
func TestHTTPConnectionCap(t *testing.T) {
	a := runApp(t, map[string]string{"HTTP_ADDR": "127.0.0.1:0", "HTTP_MAX_CONNECTIONS": "2"})
	first, second := rawConn(t, a), rawConn(t, a)
	for _, c := range []net.Conn{first, second} { // served: both are counted
		if code := get(t, c, "/healthz"); code != http.StatusOK {
			t.Fatalf("GET /healthz = %d", code)
		}
	}
	third := rawConn(t, a)
	_ = third.SetDeadline(time.Now().Add(closeWithin))
	_, _ = fmt.Fprintf(third, "GET /healthz HTTP/1.1\r\nHost: storeflow\r\n\r\n") // may fail: closed already
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	var ne net.Error
	switch {
	case err == nil:
		resp.Body.Close()
		t.Fatalf("a connection beyond HTTP_MAX_CONNECTIONS=2 was served: %s", resp.Status)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("a connection beyond HTTP_MAX_CONNECTIONS=2 was kept open for %s", closeWithin)
	}
	limit := a.http.(*connLimit)
	if n := testutil.ToFloat64(limit.refused); n != 1 {
		t.Errorf("storeflow_http_connections_refused_total = %v, want 1", n)
	}
	if n := limit.open.Load(); n != 2 {
		t.Errorf("%d connections counted open, want 2", n)
	}
	first.Close()
	deadline := time.Now().Add(closeWithin)
	for limit.open.Load() > 1 { // the server notices the close on its next read
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection still counts after %s", closeWithin)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := get(t, rawConn(t, a), "/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz after a connection closed = %d", code)
	}
}

// The test endpoints take application/json only: text/plain (what a web page
// can post to another origin without a CORS preflight), a form or no
// Content-Type is a counted 415 whose JSON names the Content-Type.
func TestTestEndpointsRequireJSON(t *testing.T) {
	a := runApp(t, map[string]string{"HTTP_ADDR": "127.0.0.1:0", "HTTP_TEST_ENDPOINTS": "true"})
	post := func(path, contentType string) (int, map[string]string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr()+path, strings.NewReader(`{"id":"1","ts":192322800,"x":1,"y":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	refused := 0
	for _, path := range []string{"/mock_entry", "/mock_focus", "/produce_entry", "/produce_move", "/produce_exit"} {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
			code, body := post(path, ct)
			refused++
			if code != http.StatusUnsupportedMediaType || !strings.Contains(body["error"], "Content-Type") ||
				!strings.Contains(body["error"], "application/json") {
				t.Errorf("POST %s as %q = %d %v, want 415 naming the Content-Type", path, ct, code, body)
			}
		}
	}
	if n := testutil.ToFloat64(a.testRefused.WithLabelValues("unsupported_media_type")); n != float64(refused) {
		t.Errorf("storeflow_test_endpoints_refused_total = %v, want %d", n, refused)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		if code, body := post("/produce_entry", ct); code != http.StatusAccepted {
			t.Errorf("POST /produce_entry as %q = %d %v, want 202", ct, code, body)
		}
	}
}

// Each write of an answer has HTTP_WRITE_TIMEOUT, counted from that write: an
// answer that keeps flowing for longer than that is not cut, a client that
// stops reading is.
func TestWriteDeadlineFollowsProgress(t *testing.T) {
	const d = 300 * time.Millisecond
	stalled := make(chan error, 1)
	srv := httptest.NewServer(writeDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" { // 8 parts, d/3 apart: over twice d in all
			for i := range 8 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(d / 3)
			}
			return
		}
		chunk := strings.Repeat("x", 1<<20) // far more than the socket buffers hold
		for range 256 {
			if _, err := io.WriteString(w, chunk); err != nil {
				stalled <- err
				return
			}
		}
		stalled <- nil
	}), d))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasSuffix(string(b), "part 7\n") {
		t.Fatalf("a slow answer that kept flowing was cut: %q, %v", b, err)
	}

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case err := <-stalled:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("writing to a client that does not read: %v, want the write deadline", err)
		}
	case <-time.After(closeWithin):
		t.Fatalf("a client that does not read held the handler for %s", closeWithin)
	}
}

// /metrics answers in OpenMetrics to a scraper that asks for it (Prometheus
// does, first), and in the Prometheus text format otherwise. The text format
// passes `promtool check metrics` (which reads no other format).
func TestMetricsOpenMetricsOnRequest(t *testing.T) {
	a := runApp(t, nil)
	const (
		text        = "text/plain; version=0.0.4"
		openMetrics = "application/openmetrics-text; version=1.0.0"
	)
	tests := map[string]struct{ accept, wantType string }{
		"no Accept":   {"", text},
		"text format": {"text/plain;version=0.0.4", text},
		"OpenMetrics": {"application/openmetrics-text; version=1.0.0", openMetrics},
		"Prometheus scraper": {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," +
			"text/plain;version=0.0.4;q=0.5,*/*;q=0.1", openMetrics},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			rec := httptest.NewRecorder()
			a.routes().ServeHTTP(rec, req)
			body := rec.Body.String()
			if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusOK || !strings.HasPrefix(ct, tt.wantType) {
				t.Fatalf("GET /metrics: %d, Content-Type %q, want 200 %q", rec.Code, ct, tt.wantType)
			}
			// OpenMetrics names a counter's family without _total and ends
			// with # EOF; the text format does neither.
			want, eof := "# TYPE storeflow_focus_detected_total counter\nstoreflow_focus_detected_total 0\n", false
			if tt.wantType == openMetrics {
				want, eof = "# TYPE storeflow_focus_detected counter\nstoreflow_focus_detected_total 0.0\n", true
			}
			if !strings.Contains(body, want) {
				t.Fatalf("want\n%sin\n%s", want, body)
			}
			if got := strings.HasSuffix(body, "# EOF\n"); got != eof {
				t.Fatalf("body ends in # EOF: %v, want %v", got, eof)
			}
			if tt.wantType == text {
				promtoolCheck(t, body)
			}
		})
	}
}

// promtoolCheck runs `promtool check metrics` on an exposition.
func promtoolCheck(t *testing.T, exposition string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): install it (Debian: apt-get install --no-install-recommends prometheus), see README, Run the tests", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
