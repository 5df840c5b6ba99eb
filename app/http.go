package app

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/recommender/score"
	"github.com/storeflow/storeflow/recommender/v2"
)

// routes is the HTTP surface on HTTP_ADDR.
func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	// The seeds' liveness probe answers a plain OK.
	mux.HandleFunc("GET /healthcheck", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("OK"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := a.notReady(r.Context()); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + why + "\n"))
			return
		}
		if d := a.degraded(); d != "" {
			_, _ = w.Write([]byte("ready, degraded: " + d + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	// The text format by default; OpenMetrics to a scraper that asks for it
	// (Accept: application/openmetrics-text), as Prometheus does.
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	score.Register(mux, a.server)
	v2.Register(mux, a.server)
	a.central.Register(mux)
	a.registerTestEndpoints(mux)
	a.loop.Register(mux)
	if a.view != nil {
		a.view.Register(mux)
	}
	return mux
}

// headerTimeout bounds the wait for a request's headers (HTTP_READ_TIMEOUT
// too, when it is shorter).
const headerTimeout = 5 * time.Second

// httpServer is the server on HTTP_ADDR. A request has HTTP_READ_TIMEOUT to
// arrive, headers and body; a keep-alive connection may wait
// HTTP_IDLE_TIMEOUT for its next request; and each part of an answer has
// HTTP_WRITE_TIMEOUT to be taken by the client (writeDeadline).
func (a *App) httpServer() *http.Server {
	c := a.cfg
	return &http.Server{
		Handler:           writeDeadline(a.routes(), c.HTTPWriteTimeout),
		ReadHeaderTimeout: min(headerTimeout, c.HTTPReadTimeout),
		ReadTimeout:       c.HTTPReadTimeout,
		IdleTimeout:       c.HTTPIdleTimeout,
	}
}

// writeDeadline gives every write of an answer d to complete, counted from
// that write, not from the request: a client that stops reading is cut off
// after d, while a long answer that keeps flowing (/metrics to a slow
// scraper) is never cut, as http.Server's WriteTimeout, one deadline for the
// whole answer, would. The deadline is cleared when a request starts, so the
// handler's own work (bounded by its own timeouts) does not count, and a
// deadline left from the connection's previous answer does not apply.
func writeDeadline(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, d: d}, r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

func (w *deadlineWriter) Flush() {
	w.extend()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// connLimit holds a listener to HTTP_MAX_CONNECTIONS open connections: one
// more is closed as soon as it is accepted, counted and logged (at most once
// per logEvery), so a crowd of idle or slow clients cannot use up the file
// descriptors the broker and the probes need.
type connLimit struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused prometheus.Counter
	log     *ratelog.Logger
}

// logEvery is how often refused connections are logged, at most.
const logEvery = 10 * time.Second

// limitConnections wraps l in a connLimit and registers its metrics.
func (a *App) limitConnections(l net.Listener) *connLimit {
	cl := &connLimit{
		Listener: l,
		max:      int64(a.cfg.HTTPMaxConnections),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "storeflow_http_connections_refused_total",
			Help: "Connections to HTTP_ADDR closed at accept because HTTP_MAX_CONNECTIONS were open."}),
		log: ratelog.New(a.log.With("component", "http"), logEvery),
	}
	a.reg.MustRegister(cl.refused, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storeflow_http_connections",
		Help: "Connections to HTTP_ADDR open now."}, func() float64 { return float64(cl.open.Load()) }))
	return cl
}

func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		_ = c.Close()
		l.refused.Inc()
		l.log.Log(slog.LevelWarn, "too_many_connections", "http connection refused",
			"reason", "too_many_connections", "max", l.max, "remote", c.RemoteAddr().String())
	}
}

// limitedConn gives its slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
