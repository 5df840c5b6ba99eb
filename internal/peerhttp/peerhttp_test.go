package peerhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func get(t *testing.T, c *Client, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.do(req)
}

func TestNewDoesNotFollowRedirects(t *testing.T) {
	var followed bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed = true
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	c := New(4, 4)
	defer c.CloseIdleConnections()
	resp, err := get(t, c, srv.URL+"/score")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || followed {
		t.Fatalf("status %d, followed %v: want the 302 itself, not followed", resp.StatusCode, followed)
	}
}

func TestNewVerifiesCertificates(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	c := New(4, 0)
	defer c.CloseIdleConnections()
	if tc := c.transport.TLSClientConfig; tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify {
		t.Fatalf("TLS config %+v: want TLS 1.2+ and verification", tc)
	}
	if resp, err := get(t, c, srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("a self-signed server was accepted")
	}
}

// net/http's error repeats the request's URL with its user name and query;
// Do's error shows neither, and still says why the call failed.
func TestDoErrorShowsNoCredentials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there: the call is refused
	c := New(4, 0)
	defer c.CloseIdleConnections()
	_, err = get(t, c, "http://token-user:s3cret@"+addr+"/score?api_key=k3y")
	if err == nil {
		t.Fatal("a call to a closed port succeeded")
	}
	for _, secret := range []string{"token-user", "s3cret", "k3y"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows %q", err, secret)
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %q: want it to say the connection was refused", err)
	}
}

// Call classifies every way a call ends, and its error says what happened
// without the URL.
func TestCallOutcomes(t *testing.T) {
	long := strings.Repeat("x", 1000)
	answer := func(status int, contentType, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			if status == http.StatusFound {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	tests := map[string]struct {
		handler  http.HandlerFunc
		want     Outcome
		wantErr  string // the whole error text; "" for none
		wantBody string
	}{
		"200":                {answer(200, "application/json", `[1]`), OK, "", `[1]`},
		"204":                {answer(204, "", ""), OK, "", ""},
		"at the size limit":  {answer(200, "", strings.Repeat("a", 512)), OK, "", strings.Repeat("a", 512)},
		"over the size":      {answer(200, "", strings.Repeat("a", 513)), BadResponse, "200 OK: answer over 512 bytes", strings.Repeat("a", 512)},
		"redirect":           {answer(302, "", ""), BadResponse, "unexpected 302 Found", ""},
		"400 with an error":  {answer(400, "application/json", `{"error":"unexpected shape for input 'features'"}`), HTTP4xx, "400 Bad Request: unexpected shape for input 'features'", `{"error":"unexpected shape for input 'features'"}`},
		"404 plain":          {answer(404, "text/plain", "404 page not found\n"), HTTP4xx, "404 Not Found: 404 page not found", "404 page not found\n"},
		"500 other JSON":     {answer(500, "application/json", `{"detail":"boom"}`), HTTP5xx, `500 Internal Server Error: {"detail":"boom"}`, `{"detail":"boom"}`},
		"502 page on a line": {answer(502, "text/html", "<html>\n<h1>Bad Gateway</h1></html>"), HTTP5xx, "502 Bad Gateway: <html> <h1>Bad Gateway</h1></html>", "<html>\n<h1>Bad Gateway</h1></html>"},
		"503 empty":          {answer(503, "", ""), HTTP5xx, "503 Service Unavailable: (empty body)", ""},
		"long error is cut":  {answer(500, "", long), HTTP5xx, "500 Internal Server Error: " + long[:200] + "…", long[:512]},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := New(4, 0)
			defer c.CloseIdleConnections()
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := c.Call(req, 512)
			gotErr := ""
			if r.Err != nil {
				gotErr = r.Err.Error()
			}
			if r.Outcome != tt.want || gotErr != tt.wantErr || string(r.Body) != tt.wantBody {
				t.Fatalf("got %s %q body %q\nwant %s %q body %q", r.Outcome, gotErr, r.Body, tt.want, tt.wantErr, tt.wantBody)
			}
		})
	}
}

// A call's own deadline, the caller's deadline and the caller's cancelling
// are three outcomes, while sending and while reading the answer.
func TestCallEndedByContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" { // the header, then a body that never ends
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "[")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	c := New(4, 0)
	defer c.CloseIdleConnections()

	own := func() (context.Context, context.CancelFunc) {
		return WithTimeout(context.Background(), 100*time.Millisecond)
	}
	caller := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 100*time.Millisecond)
	}
	cancelled := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		return ctx, cancel
	}
	tests := map[string]struct {
		ctx     func() (context.Context, context.CancelFunc)
		path    string
		want    Outcome
		wantErr string
		is      error
	}{
		"own deadline":                        {own, "/", Timeout, "timed out after 100ms: context deadline exceeded", context.DeadlineExceeded},
		"own deadline reading the answer":     {own, "/body", Timeout, "timed out after 100ms reading the answer: context deadline exceeded", context.DeadlineExceeded},
		"caller's deadline":                   {caller, "/", Timeout, "the caller's deadline passed: context deadline exceeded", context.DeadlineExceeded},
		"caller cancelled":                    {cancelled, "/", Canceled, "canceled: context canceled", context.Canceled},
		"caller cancelled reading the answer": {cancelled, "/body", Canceled, "canceled reading the answer: context canceled", context.Canceled},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := c.Call(req, 64)
			if r.Outcome != tt.want || r.Err == nil || r.Err.Error() != tt.wantErr || !errors.Is(r.Err, tt.is) {
				t.Fatalf("got %s %v, want %s %q", r.Outcome, r.Err, tt.want, tt.wantErr)
			}
		})
	}
}

// No answer at all is a transport failure, and its error shows no
// credentials of the URL.
func TestCallTransport(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := New(4, 0)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://user:s3cret@"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Call(req, 64)
	if r.Outcome != Transport || r.Status != 0 || !errors.Is(r.Err, syscall.ECONNREFUSED) || strings.Contains(r.Err.Error(), "s3cret") {
		t.Fatalf("got %s %v, want a refused transport error without the password", r.Outcome, r.Err)
	}
}
