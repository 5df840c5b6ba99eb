package peerhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

func get(t *testing.T, c *Client, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Do(req)
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
