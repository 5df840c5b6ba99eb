// Package peerhttp is the HTTP client storeflow uses to call its peer
// services (the central, a prediction service): one place for the policy
// they share — the transport, a deadline per call told apart from the
// caller's, a bounded read of the answer, the classification of how every
// call ended, and errors that quote neither credentials nor more of an
// answer than a line.
package peerhttp

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/storeflow/storeflow/internal/redact"
)

// Client is the HTTP client of one peer service.
type Client struct {
	http      *http.Client
	transport *http.Transport
}

// New returns a client that keeps up to maxIdle connections alive per host,
// opens at most maxConns per host (0: no limit), verifies certificates with
// TLS 1.2 or newer, honours the proxy environment variables, and never
// follows a redirect: a redirected POST would become a GET, and a redirect
// may carry headers or the URL's credentials to another host. Callers bound
// each request with its context; the dial and handshake limits only stop a
// dead peer from holding a connection slot.
func New(maxIdle, maxConns int) *Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		ForceAttemptHTTP2:   true, // a custom dialer turns it off otherwise
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConns:        maxIdle,
		MaxIdleConnsPerHost: maxIdle,
		MaxConnsPerHost:     maxConns,
		// Shorter than the 60 s a storeflow peer keeps an idle connection
		// (HTTP_IDLE_TIMEOUT), so a call never goes out on a connection the
		// peer is closing at that moment.
		IdleConnTimeout:       50 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &Client{
		http: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		transport: transport,
	}
}

// do sends req. Its error never shows credentials: net/http's *url.Error,
// which repeats the request's URL (user name and query included), is
// unwrapped to its cause, since callers name the peer themselves
// (redact.URL); and whatever credentials of the request's URL the cause
// still quotes are masked.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = redact.Error(err, req.URL.String())
	}
	return resp, err
}

// CloseIdleConnections closes the connections kept alive. The client stays
// usable.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }
