package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The embedded broker's listeners are storeflow's own, not mochi's. mochi
// counts each connection in Listeners.ClientsWg from inside the goroutine
// that serves it, and Server.Close waits on that group: a connection
// accepted just before Close can call Add while Close already waits, a data
// race (mochi-mqtt/server#424, #488, #541), and a client that connected but
// never sent CONNECT keeps Close waiting, since mochi only disconnects clients
// it has registered. A gate closes both holes. And mochi's own way of
// disconnecting a listener's clients (Clients.GetByListener) takes its read
// lock twice, which deadlocks against a client registering at that moment;
// the listeners call Embedded.disconnect instead.

// gate tracks the connections one listener handed to mochi. Close on the
// listener calls shut, which returns only when every one of them has been
// counted by mochi (it has started reading, which mochi does after Add) or
// has ended, and which closes the ones mochi has not registered.
type gate struct {
	adm     *admission
	mu      sync.Mutex
	closed  bool
	pending sync.WaitGroup // handed to mochi, not yet read from
	live    map[*gatedConn]struct{}
}

// gatedConn is a connection that tells its gate when mochi first reads it.
type gatedConn struct {
	net.Conn
	counted sync.Once
	g       *gate
	// Set by the auth hook: admitted once its CONNECT was accepted, refused
	// when the hook refused it (and counted why).
	admitted, refused atomic.Bool
}

func (c *gatedConn) Read(p []byte) (int, error) {
	c.counted.Do(c.g.pending.Done)
	return c.Conn.Read(p)
}

// enter admits c, or reports false (and closes c) once the gate is shut or
// when BROKER_MAX_CONNECTIONS are open. An admitted connection must send its
// CONNECT (after the TLS handshake, if any) within BROKER_CONNECT_TIMEOUT;
// mochi replaces the deadline with the keep-alive's once it has the CONNECT.
func (g *gate) enter(c net.Conn, listener string) (*gatedConn, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		_ = c.Close()
		return nil, false
	}
	if !g.adm.acquire() {
		_ = c.Close()
		g.adm.refused(refuseTooMany, listener, c.RemoteAddr().String(), "max_connections", g.adm.max)
		return nil, false
	}
	_ = c.SetDeadline(time.Now().Add(g.adm.timeout))
	if g.live == nil {
		g.live = map[*gatedConn]struct{}{}
	}
	gc := &gatedConn{Conn: c, g: g}
	g.pending.Add(1)
	g.live[gc] = struct{}{}
	return gc, true
}

// leave is called when mochi is done with c; err is what mochi returned.
// A connection that ended before its CONNECT was accepted, and that the auth
// hook did not refuse itself, is counted here with the reason.
func (g *gate) leave(c *gatedConn, listener string, err error) {
	c.counted.Do(g.pending.Done) // mochi returned without reading
	_ = c.Close()
	g.mu.Lock()
	delete(g.live, c)
	closed := g.closed
	g.mu.Unlock()
	g.adm.release()
	if c.admitted.Load() {
		if errors.Is(err, packets.ErrPacketTooLarge) {
			g.adm.m.denied.WithLabelValues(denyTooLarge).Inc()
		}
		return
	}
	if c.refused.Load() || closed {
		return
	}
	if reason := preConnectReason(err); reason != "" {
		g.adm.refused(reason, listener, c.RemoteAddr().String(), "error", err)
	}
}

// preConnectReason classifies why a connection ended before its CONNECT was
// accepted; "" for a client that just went away.
func preConnectReason(err error) string {
	var code packets.Code
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return ""
	case errors.Is(err, os.ErrDeadlineExceeded):
		return refuseTimeout
	case errors.Is(err, packets.ErrPacketTooLarge):
		return refuseTooLarge
	case errors.As(err, &code) && code == packets.ErrServerBusy:
		return refuseTooMany // mochi's own MaximumClients
	}
	return refuseProtocol
}

func (g *gate) isShut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// shut admits no more connections, waits until mochi has counted the admitted
// ones, lets disconnect say goodbye to the clients mochi knows, and closes
// every connection still open (those still before or in CONNECT).
func (g *gate) shut(disconnect func()) {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.pending.Wait() // every Add above happened before this: closed is set under mu
	disconnect()
	g.mu.Lock()
	for c := range g.live {
		_ = c.Conn.Close()
	}
	g.mu.Unlock()
}

// streamListener serves MQTT over TCP, or TLS when conf is set. It binds when
// built, so a busy port is an error from NewEmbedded and port 0 resolves to a
// real one before Run.
type streamListener struct {
	id, proto  string
	ln         net.Listener
	log        *slog.Logger
	disconnect func(listener string) // disconnects the clients mochi registered
	gate       gate
	done       chan struct{} // closed when the accept loop has ended
	serveOnce  sync.Once
}

func newStreamListener(id, addr string, conf *tls.Config, adm *admission, disconnect func(string)) (*streamListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	proto := "tcp"
	if conf != nil {
		ln = tls.NewListener(ln, conf)
		proto = "tls"
	}
	return &streamListener{id: id, proto: proto, ln: ln, disconnect: disconnect, gate: gate{adm: adm},
		done: make(chan struct{}), log: slog.Default()}, nil
}

func (l *streamListener) ID() string       { return l.id }
func (l *streamListener) Address() string  { return l.ln.Addr().String() }
func (l *streamListener) Protocol() string { return l.proto }

// Init sets the logger; mochi calls it from AddListener, before Serve.
func (l *streamListener) Init(log *slog.Logger) error {
	l.log = log.With("listener", l.id)
	return nil
}

// Serve accepts until Close. A failing Accept that is not the listener being
// closed (too many open files, say) is retried with a growing pause, as
// net/http does, instead of ending the listener for good.
func (l *streamListener) Serve(establish listeners.EstablishFn) {
	l.serveOnce.Do(func() {
		defer close(l.done)
		var pause time.Duration
		for {
			conn, err := l.ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed; retrying", "error", err, "pause", pause)
				time.Sleep(pause)
				continue
			}
			pause = 0
			gc, ok := l.gate.enter(conn, l.id)
			if !ok {
				if l.gate.isShut() {
					return
				}
				continue
			}
			go func() {
				err := establish(l.id, gc)
				l.gate.leave(gc, l.id, err)
				if err != nil {
					l.log.Debug("client connection ended", "remote", conn.RemoteAddr().String(), "error", err)
				}
			}()
		}
	})
}

// Close stops accepting and disconnects this listener's clients, including
// those that have connected but not yet sent CONNECT. mochi's closeClients is
// not used (see the top of this file).
func (l *streamListener) Close(listeners.CloseFn) {
	_ = l.ln.Close()
	// Once.Do waits for a running Serve, which ends now that ln is closed;
	// a Serve that has not started yet never will.
	l.serveOnce.Do(func() { close(l.done) })
	<-l.done
	l.gate.shut(func() { l.disconnect(l.id) })
}

// wsListener is MQTT over WebSocket, for browsers. Unlike mochi's own
// listener it binds when built, so a busy port is an error from NewEmbedded
// and port 0 resolves to a real one.
type wsListener struct {
	id         string
	ln         net.Listener
	log        *slog.Logger
	disconnect func(listener string)
	gate       gate
}

func newWSListener(id, addr string, adm *admission, disconnect func(string)) (*wsListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &wsListener{id: id, ln: ln, disconnect: disconnect, gate: gate{adm: adm}, log: slog.Default()}, nil
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log.With("listener", l.id)
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Browser pages served from anywhere may connect, as with mochi's
		// listener; who may do what is the auth hook's decision.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return // Upgrade has answered the request
			}
			gc, ok := l.gate.enter(&wsConn{Conn: c.NetConn(), c: c}, l.id)
			if !ok {
				return
			}
			err = establish(l.id, gc)
			l.gate.leave(gc, l.id, err)
			if err != nil {
				l.log.Debug("websocket client ended", "remote", r.RemoteAddr, "error", err)
			}
		}),
	}
	_ = srv.Serve(l.ln) // ends when Close closes the listener
}

// Close stops accepting and disconnects this listener's clients; the
// WebSocket connections are hijacked, so http.Server does not track them:
// the gate does.
func (l *wsListener) Close(listeners.CloseFn) {
	_ = l.ln.Close()
	l.gate.shut(func() { l.disconnect(l.id) })
}

// wsConn carries the MQTT byte stream in binary WebSocket messages.
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader  // the message being read, nil between messages
	mu sync.Mutex // gorilla allows one writer at a time
}

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			typ, r, err := w.c.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if errors.Is(err, io.EOF) {
			w.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one message.
func (w *wsConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
