package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/storeflow/storeflow/config"
)

// healthcheck asks the storeflow of this environment's HTTP_ADDR whether it
// is ready (GET /readyz, or --path) and fails unless it answers 200 within
// --timeout: the probe a container image without a shell or curl can run
// (the Dockerfile's HEALTHCHECK).
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "/readyz", "what to GET: /readyz (ready to take traffic) or /healthz (the process runs)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long the answer may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !strings.HasPrefix(*path, "/") || *timeout <= 0 {
		return fmt.Errorf("healthcheck: want a --path starting with / and a positive --timeout")
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	if cfg.HTTPAddr == config.HTTPOff {
		return fmt.Errorf("healthcheck: HTTP_ADDR=%s: no HTTP endpoints to ask", config.HTTPOff)
	}
	target := "http://" + probeAddr(cfg.HTTPAddr) + *path
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// Straight to the local listener: never through a proxy of the environment.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error // it repeats the URL
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("healthcheck: GET %s (HTTP_ADDR): %w", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	answer := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %d %s", target, resp.StatusCode, answer)
	}
	fmt.Fprintln(stdout, answer)
	return nil
}

// probeAddr is where to reach a listener on addr from the same host: a
// wildcard host (0.0.0.0, ::, none) is reached on loopback.
func probeAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
