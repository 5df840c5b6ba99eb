package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/ratelog"
)

// Embedded is an in-process mochi-mqtt v2 broker. Outside clients (phones,
// mosquitto_sub) reach it over TCP, TLS or WebSocket; storeflow's own parts
// publish and subscribe through the inline client, without a network hop.
type Embedded struct {
	srv       *mqtt.Server
	qos       byte // MQTT_QOS: the most an outside subscriber gets
	tcp       *streamListener
	tls       *streamListener // nil: no BROKER_TLS_CERT_FILE
	ws        *wsListener     // nil: no BROKER_WS_LISTEN_ADDR
	log       *slog.Logger
	nextID    atomic.Int32
	closed    atomic.Bool
	ready     chan struct{}
	once      sync.Once
	closeOnce sync.Once
	passwords *passwordGate // nil without BROKER_AUTH_FILE

	fast *fastPath // the topics whose messages skip mochi's topic index
}

// endpoint is one listener as configured.
type endpoint struct {
	id, env, addr string
	certs         bool // verified client certificates required
}

// EmbeddedOptions are what the embedded broker needs from the rest of the
// program besides its Config.
type EmbeddedOptions struct {
	// Registerer receives the broker's metrics; nil: a private registry.
	Registerer prometheus.Registerer
	// OwnTopics are the topics only storeflow publishes on (focus,
	// prediction, browsing): outside clients may not retain messages there, directly
	// or by a will, unless an acl retain line allows it.
	OwnTopics []string
}

// NewEmbedded builds the broker and binds its listeners, so their addresses
// are known (and a busy port, a bad certificate or auth file, or a listener
// open to the network without auth is an error) before Run.
func NewEmbedded(cfg Config, log *slog.Logger, opts EmbeddedOptions) (*Embedded, error) {
	cfg = cfg.withLimitDefaults()
	tlsConf, err := embeddedTLS(cfg)
	if err != nil {
		return nil, err
	}
	var auth *Auth
	if cfg.AuthFile != "" {
		if auth, err = LoadAuthFile(cfg.AuthFile); err != nil {
			return nil, fmt.Errorf("broker: BROKER_AUTH_FILE: %w", err)
		}
	}
	tcpEnv := "BROKER_LISTEN_ADDR"
	if cfg.ListenAddr == "" {
		tcpEnv = "MQTT_PORT" // the address is 127.0.0.1:$MQTT_PORT
	}
	eps := []endpoint{{id: "tcp", env: tcpEnv, addr: cfg.Listen()}}
	if tlsConf != nil {
		eps = append(eps, endpoint{id: "tls", env: "BROKER_TLS_LISTEN_ADDR", addr: cfg.TLSListenAddr, certs: cfg.TLSClientCAFile != ""})
	}
	if cfg.WSListenAddr != "" {
		eps = append(eps, endpoint{id: "ws", env: "BROKER_WS_LISTEN_ADDR", addr: cfg.WSListenAddr})
	}
	hook := &authHook{auth: auth, certListeners: map[string]bool{}, anonymous: map[string]bool{}, log: log,
		own: map[string]bool{}, maxRetained: cfg.MaxRetained, timeout: cfg.ConnectTimeout, warn: ratelog.New(log, logEvery)}
	for _, t := range opts.OwnTopics {
		hook.own[t] = true
	}
	for _, ep := range eps {
		switch {
		case ep.certs:
			hook.certListeners[ep.id] = true
		case auth != nil:
			// Users are checked on every listener; nobody is anonymous.
		case isLoopback(ep.addr):
			hook.anonymous[ep.id] = true
		case cfg.AllowAnonymous:
			hook.anonymous[ep.id] = true
			log.Warn("embedded broker accepts anonymous clients from the network", "listener", ep.id, "listen_addr", ep.addr)
		default:
			return nil, fmt.Errorf("broker: %s=%s accepts clients from the network: set BROKER_AUTH_FILE, or BROKER_ALLOW_ANONYMOUS=true to allow anonymous clients", ep.env, ep.addr)
		}
	}
	if auth != nil && cfg.AllowAnonymous {
		log.Warn("BROKER_ALLOW_ANONYMOUS has no effect with BROKER_AUTH_FILE: anonymous clients are refused")
	}

	warnFileLimit(cfg.MaxConnections, log)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumClients = int64(cfg.MaxConnections)
	caps.MaximumClientWritesPending = int32(cfg.ClientQueue)
	// Room for a full offline session plus a full write queue; what a client
	// leaves unacknowledged beyond that is refused and counted (inflight_full).
	caps.MaximumInflight = uint16(min(cfg.SessionQueue+cfg.ClientQueue, 65535))
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(newThrottledHandler(log.Handler(), logEvery)),
		Capabilities: caps,
	})
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := newMetrics(reg, srv)
	adm := &admission{max: int64(cfg.MaxConnections), timeout: cfg.ConnectTimeout, m: m, log: hook.warn}
	hook.srv, hook.m, hook.adm = srv, m, adm
	if auth != nil {
		hook.passwords = newPasswordGate(auth, m)
	}
	b := &Embedded{srv: srv, log: log, qos: cfg.QoS, ready: make(chan struct{}), passwords: hook.passwords,
		fast: newFastPath(srv, func(n int) { m.fastTopics.Set(float64(n)) })}
	// The auth hook replaces mochi's allow-all: without any auth hook mochi
	// refuses every client.
	for _, h := range []mqtt.Hook{hook, newDelivery(srv, cfg.SessionQueue, cfg.ClientQueue, m, log),
		&protocolHook{maxPacket: uint32(cfg.MaxPacketSize)}, b.fast} { // the fast path last: after the auth hook's checks
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
		}
	}
	for _, ep := range eps {
		var l listeners.Listener
		switch ep.id {
		case "tcp":
			b.tcp, err = newStreamListener(ep.id, ep.addr, nil, adm, b.disconnect)
			l = b.tcp
		case "tls":
			b.tls, err = newStreamListener(ep.id, ep.addr, tlsConf, adm, b.disconnect)
			l = b.tls
		case "ws":
			b.ws, err = newWSListener(ep.id, ep.addr, adm, b.disconnect)
			l = b.ws
		}
		if err != nil {
			_ = srv.Close() // releases the listeners bound so far
			return nil, listenError(ep, cfg, err)
		}
		if err := srv.AddListener(l); err != nil {
			_ = srv.Close() // releases the listeners bound so far
			return nil, fmt.Errorf("broker: listen on %s (%s): %w", ep.addr, ep.env, err)
		}
	}
	return b, nil
}

// listenError names the setting behind a listener that could not bind. For
// a port already in use it says how to move the listener and, for the MQTT
// port, how to use the broker that holds it instead (on Debian and Ubuntu,
// apt-get install mosquitto starts one on 127.0.0.1:1883).
func listenError(ep endpoint, cfg Config, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("broker: listen on %s (%s): %w", ep.addr, ep.env, err)
	}
	if ep.id != "tcp" {
		return fmt.Errorf("broker: listen on %s (%s): %w: another program holds the port: set %s to a free address", ep.addr, ep.env, err, ep.env)
	}
	host, port, _ := net.SplitHostPort(ep.addr)
	if host == "" || net.ParseIP(host).IsUnspecified() {
		host = "127.0.0.1"
	}
	use := fmt.Sprintf("MQTT_HOST=%s", host)
	if port != "1883" {
		use += " MQTT_PORT=" + port
	}
	move := fmt.Sprintf("set MQTT_PORT to a free port (MQTT_PORT=%d)", cfg.Port%65535+1)
	if cfg.ListenAddr != "" {
		move = "set BROKER_LISTEN_ADDR to a free address"
	}
	return fmt.Errorf("broker: listen on %s (the embedded broker, %s): %w: another program holds the port, "+
		"perhaps a broker (apt-get install mosquitto starts one on 1883): %s, or use the broker that holds it "+
		"instead of the embedded one: %s", ep.addr, ep.env, err, move, use)
}

// embeddedTLS is the TLS listener's configuration, nil when it is off.
func embeddedTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" {
		if cfg.TLSClientCAFile != "" {
			return nil, errors.New("broker: BROKER_TLS_CLIENT_CA_FILE is set but BROKER_TLS_CERT_FILE is empty: client certificates need the TLS listener")
		}
		return nil, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, errors.New("broker: set both BROKER_TLS_CERT_FILE and BROKER_TLS_KEY_FILE, or neither")
	}
	certPEM, err := os.ReadFile(cfg.TLSCertFile)
	if err != nil {
		return nil, fmt.Errorf("broker: BROKER_TLS_CERT_FILE: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: BROKER_TLS_KEY_FILE: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("broker: BROKER_TLS_CERT_FILE=%s with BROKER_TLS_KEY_FILE=%s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if cfg.TLSClientCAFile != "" {
		caPEM, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: BROKER_TLS_CLIENT_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("broker: BROKER_TLS_CLIENT_CA_FILE=%s: no PEM certificate in it", cfg.TLSClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// Addr is the TCP address outside clients connect to (the real port when the
// configured one was 0).
func (b *Embedded) Addr() string { return b.tcp.Address() }

// TLSAddr is the TLS listener's address, empty when it is off.
func (b *Embedded) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// WSAddr is the WebSocket listener's address, empty when it is off.
func (b *Embedded) WSAddr() string {
	if b.ws == nil {
		return ""
	}
	return b.ws.Address()
}

// fastPathCheck is how often the fast path reads mochi's index again, for
// the subscriptions of an expired session (removed without a hook).
const fastPathCheck = 5 * time.Second

// Ready is closed once the broker serves.
func (b *Embedded) Ready() <-chan struct{} { return b.ready }

// Run serves until ctx is done, then disconnects every client and closes the
// listener. It returns nil on a normal stop.
func (b *Embedded) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.log.Info("embedded broker serving", "addr", b.Addr(), "tls_addr", b.TLSAddr(), "ws_addr", b.WSAddr())
	b.once.Do(func() { close(b.ready) })
	tick := time.NewTicker(fastPathCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return b.Close()
		case <-tick.C:
			b.fast.refresh()
		}
	}
}

// Close disconnects every client and closes the listener. Run calls it when
// its context ends; call it directly only for a broker that never ran. It is
// safe to call more than once (mochi's own Close is not).
func (b *Embedded) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		if b.passwords != nil {
			b.passwords.stop()
		}
		err = b.srv.Close()
	})
	return err
}

// disconnect sends the clients registered on listener a DISCONNECT (server
// shutting down; MQTT 5 clients only, see protocolHook) and closes them. It
// reads the clients with Clients.GetAll, which takes mochi's lock once (see
// listener.go).
func (b *Embedded) disconnect(listener string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// Publish delivers payload to every subscriber. Inline subscribers run before
// it returns. Outside subscribers get it at the QoS they subscribed with, up
// to MQTT_QOS: a phone at QoS 1 acknowledges each coupon, and one with a
// persistent session that is offline finds them waiting when it comes back
// (see delivery). The payload is copied so the caller may reuse its buffer as
// soon as Publish returns. (mochi v2.7.9 itself copies the payload for each
// TCP subscriber's write queue, in packets.Packet.Copy; this copy covers what
// gets the slice itself, an inline handler that keeps it or a hook, and a
// mochi version that stops copying.)
func (b *Embedded) Publish(_ context.Context, topic string, payload []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if hs := b.fast.handlers(topic); hs != nil {
		// Handlers must not keep payload (see Handler), so no copy.
		for _, h := range hs {
			h(topic, payload)
		}
		return nil
	}
	if err := b.srv.Publish(topic, bytes.Clone(payload), false, b.qos); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Subscribe registers h for messages matching filter. It can be called before
// or after Run; h runs synchronously on the publisher's goroutine.
func (b *Embedded) Subscribe(filter string, h Handler) error {
	id := int(b.nextID.Add(1))
	err := b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload)
	})
	if err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	b.fast.addInline(filter, h)
	return nil
}

// SubscribeAck is Subscribe for a handler that acknowledges each message
// itself: in process there is nothing to acknowledge, ack does nothing.
func (b *Embedded) SubscribeAck(filter string, h AckHandler) error {
	return b.Subscribe(filter, func(topic string, payload []byte) { h(topic, payload, noAck) })
}

func noAck() {}
