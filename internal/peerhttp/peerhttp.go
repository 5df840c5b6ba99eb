// Package peerhttp builds the HTTP client storeflow uses to call its peer
// services (the central, a prediction service): one place for the policy
// they share.
package peerhttp

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// New returns a client and its transport (for CloseIdleConnections) that
// keeps up to maxIdle connections alive per host, opens at most maxConns
// per host (0: no limit), verifies certificates with TLS 1.2 or newer,
// honours the proxy environment variables, and never follows a redirect: a
// redirected POST would become a GET, and a redirect may carry headers or
// the URL's credentials to another host. Callers bound each request with
// its context; the dial and handshake limits only stop a dead peer from
// holding a connection slot.
func New(maxIdle, maxConns int) (*http.Client, *http.Transport) {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true, // a custom dialer turns it off otherwise
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, transport
}
