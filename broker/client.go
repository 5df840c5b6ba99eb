package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/internal/redact"
)

// ErrOfflineQueueFull is returned by Publish when the connection is down and
// MQTT_OFFLINE_QUEUE messages already wait for it: the message is dropped
// (and counted as storeflow_mqtt_client_events_total{event="offline_dropped"}).
var ErrOfflineQueueFull = errors.New("offline queue full: message dropped")

// Client is a connection to an external broker that loses nothing across a
// broker restart or a network cut:
//
//   - a persistent session (clean session off, unless Config.CleanSession) under the stable client id
//     MQTT_NAME, so the broker keeps the subscriptions and the QoS 1/2
//     messages for it while it is away; MQTT_NAME must therefore be unique
//     per running instance, or two instances take the session from each other;
//   - paho's in-memory store, so QoS 1/2 publishes in flight when the
//     connection drops, or being written as it drops, are sent again after
//     the reconnect;
//   - its own reconnect (see reconnect): the first attempt at once, then at
//     most reconnectMaxWait apart, subscriptions renewed on every connect,
//     all at once (a broker without persistence forgets them, and drops what
//     is published for them until they are back);
//   - publishes made while disconnected, or refused by paho as the
//     connection drops, wait in a bounded queue (MQTT_OFFLINE_QUEUE) and go
//     out in order after the reconnect; what does not fit is dropped and
//     counted.
//
// Messages the broker kept for a previous run of the same client id (queued
// while it was away, or delivered and never acknowledged) arrive right after
// the connection opens, before any Subscribe: the client holds them (up to
// earlyCap) and hands them to the first subscription whose filter matches.
//
// A message is acknowledged (PUBACK) when its handler returns, or, for a
// SubscribeAck handler, when the handler calls ack: a message handed to a
// queue and lost with the process is then delivered again.
type Client struct {
	c        paho.Client
	qos      byte
	log      *slog.Logger
	queueCap int

	mu     sync.Mutex
	subs   map[string]AckHandler // by filter: its route's deliver
	routes map[string]*route     // by filter
	early  []paho.Message        // messages that came before their subscription, oldest first (at most earlyCap)
	up     bool                  // the connection is open (between onConnect and connection lost)
	online bool                  // up and the offline queue is drained: Publish goes straight to paho
	lost   chan struct{}         // closed when the current connection is lost
	queue  []outgoing            // publishes waiting for the connection, oldest first
	downAt time.Time             // when the connection was lost (while !up)
	downBy error                 // why: the loss, then the last failed reconnect (credentials hidden)

	drainMu sync.Mutex // one drain at a time, in queue order
	connMu  sync.Mutex // a reconnect attempt starts only while done is open

	ready     chan struct{}
	readyOnce sync.Once
	done      chan struct{} // closed by Run's end or Close
	closeOnce sync.Once

	m    clientMetrics
	warn *ratelog.Logger // at most one line per kind and logEvery
	urls []string        // the brokers, for hiding their credentials in paho's errors
}

// outgoing is a publish waiting in the offline queue; payload is a copy.
type outgoing struct {
	topic   string
	payload []byte
}

// clientMetrics are the external broker connection's counters, recorded
// where things happen (storeflow_mqtt_client_events_total{event}).
type clientMetrics struct {
	connects       prometheus.Counter // connections made (the first one and every reconnect)
	connectionLost prometheus.Counter // connections lost
	published      prometheus.Counter // publishes the broker acknowledged (QoS 1/2) or that were written (QoS 0)
	publishErrors  prometheus.Counter // publishes paho reported failed
	resent         prometheus.Counter // QoS 1/2 publishes the connection broke under: paho sends them again after the reconnect
	offlineQueued  prometheus.Counter // publishes put in the offline queue while disconnected
	offlineDropped prometheus.Counter // publishes dropped because the offline queue was full
	earlyDropped   prometheus.Counter // messages before their subscription dropped: earlyCap held already
}

// newClientMetrics registers the client's metrics with reg (nil: kept
// unregistered, for tests); pending reads the offline queue's length.
func newClientMetrics(reg prometheus.Registerer, pending func() int) clientMetrics {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storeflow_mqtt_client_events_total",
		Help: "The external broker connection: connects, connections lost, publishes, failed publishes, publishes resent after a connection loss, publishes queued and dropped while disconnected, messages before their subscription dropped.",
	}, []string{"event"})
	m := clientMetrics{
		connects:       events.WithLabelValues("connect"),
		connectionLost: events.WithLabelValues("connection_lost"),
		published:      events.WithLabelValues("published"),
		publishErrors:  events.WithLabelValues("publish_error"),
		resent:         events.WithLabelValues("resent"),
		offlineQueued:  events.WithLabelValues("offline_queued"),
		offlineDropped: events.WithLabelValues("offline_dropped"),
		earlyDropped:   events.WithLabelValues("early_dropped"),
	}
	if reg != nil {
		reg.MustRegister(events, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "storeflow_mqtt_client_offline_pending",
			Help: "Publishes waiting in the offline queue for the external broker to come back.",
		}, func() float64 { return float64(pending()) }))
	}
	return m
}

// pending is the number of publishes in the offline queue now.
func (c *Client) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

const (
	// After a lost connection the first reconnect attempt is made at once;
	// after a failed one the client waits reconnectFirstWait, then twice as
	// long each time, up to reconnectMaxWait. A broker that does not answer
	// spaces the attempts by connectTimeout anyway; one that answers (a
	// refused connection, a CONNACK refusal) is tried again soon, so the
	// client is back within reconnectMaxWait of the broker. (paho's own
	// backoff waited 1, 2, 4, 8 s: with a broker that restarts without
	// persistence, every event published in that time is lost.)
	reconnectFirstWait = 50 * time.Millisecond
	reconnectMaxWait   = 500 * time.Millisecond
	// connectTimeout bounds one connection attempt (TCP, TLS and CONNACK).
	connectTimeout = 10 * time.Second
	// subscribeTimeout bounds the wait for a SUBACK.
	subscribeTimeout = 10 * time.Second
)

// BrokerURLs turns MQTT_HOST (a comma-separated list; each entry a host, a
// host:port or a URL such as ssl://host:8883) into the broker URLs to try in
// order. An entry without a port gets MQTT_PORT; one without a scheme gets
// tcp://, or ssl:// when a CA file is set.
func BrokerURLs(cfg Config) ([]string, error) {
	var urls []string
	scheme := "tcp"
	if cfg.BrokerCertFile != "" {
		scheme = "ssl"
	}
	for _, h := range strings.Split(cfg.Host, ",") {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return nil, fmt.Errorf("MQTT_HOST=%q: empty host in the list", redact.URLs(cfg.Host))
		case strings.Contains(h, "://"):
			// Fix: a tcp or TLS URL without a port (ssl://broker.example.com)
			// used to be passed on as is, and paho dials "host" with no port
			// ("missing port in address"). The README promises MQTT_PORT for
			// every entry without one. ws, wss and unix URLs go through as
			// given: their dialers have defaults of their own.
			u, err := url.Parse(h)
			if err != nil {
				// Not the parser's message: it may quote a piece of a password.
				return nil, fmt.Errorf(`MQTT_HOST=%q: %q is not a broker URL (percent-encode a "/", "?", "#" or "@" in a password)`, redact.URLs(cfg.Host), redact.URL(h))
			}
			if rawTCP[u.Scheme] && u.Hostname() != "" && u.Port() == "" {
				u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(cfg.Port))
				h = u.String()
			}
			urls = append(urls, h)
		default:
			if _, _, err := net.SplitHostPort(h); err != nil {
				h = net.JoinHostPort(h, strconv.Itoa(cfg.Port))
			}
			urls = append(urls, scheme+"://"+h)
		}
	}
	return urls, nil
}

// rawTCP are the URL schemes paho dials as a bare host:port (plain or TLS).
var rawTCP = map[string]bool{"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "mqtt+ssl": true, "tcps": true}

// isTLSURL reports whether paho dials u (a broker URL) with TLS.
func isTLSURL(u string) bool {
	scheme, _, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps", "wss":
		return true
	}
	return false
}

// Dial connects to the external broker and fails fast: a refused connection,
// a bad password or a certificate problem is an error here, not a retry loop.
// Each host in MQTT_HOST is tried once, in order. After the first connection,
// the client reconnects on its own (reconnect).
func Dial(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Client, error) {
	if errs := validateExternal(cfg); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return dialAs(ctx, cfg, cfg.Name, log, reg)
}

// dialAs is Dial, connecting as client id name, with cfg already checked.
func dialAs(ctx context.Context, cfg Config, name string, log *slog.Logger, reg prometheus.Registerer) (*Client, error) {
	urls, err := BrokerURLs(cfg)
	if err != nil {
		return nil, err
	}
	password, err := readPassword(cfg)
	if err != nil {
		return nil, err
	}
	tc, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	cl := &Client{
		qos:      cfg.QoS,
		log:      log,
		queueCap: cfg.OfflineQueue,
		subs:     map[string]AckHandler{},
		routes:   map[string]*route{},
		lost:     make(chan struct{}),
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		warn:     ratelog.New(log, logEvery),
		urls:     urls,
	}
	cl.m = newClientMetrics(reg, cl.pending)
	close(cl.lost) // not connected yet
	opts := paho.NewClientOptions().
		SetClientID(name).
		SetProtocolVersion(4). // MQTT 3.1.1; no retry with 3.1, whose refusal would hide the first one's reason
		SetUsername(cfg.Username).
		SetPassword(password).
		SetCleanSession(cfg.CleanSession).
		SetStore(NewStore()).    // in-flight QoS 1/2 publishes are resent in the order they were made
		SetResumeSubs(false).    // onConnect renews every subscription itself
		SetAutoReconnect(false). // reconnect does it, on its own schedule
		SetConnectRetry(false).  // Dial fails fast; only an established connection is retried
		SetConnectTimeout(connectTimeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).    // per-shopper order: handlers run one after another
		SetAutoAckDisabled(true). // subscribe acknowledges: at once, or when a SubscribeAck handler says
		SetTLSConfig(tc).
		SetCustomOpenConnectionFn(openConnection). // buffered reads; the name to verify filled in for every host
		SetDefaultPublishHandler(cl.unrouted).
		SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(cl.onConnectionLost)
	for _, u := range urls {
		opts.AddBroker(u)
	}
	cl.c = paho.NewClient(opts)
	tok := cl.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// paho goes on with the attempt; a connection that still comes up
		// would be left open (and reconnecting) with nobody to close it.
		go func() {
			<-tok.Done()
			cl.shutdown(0)
		}()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		cl.shutdown(0)
		hint := connectHint(err, cfg, anyTLS(urls))
		if hint != "" {
			hint = " (" + hint + ")"
		}
		return nil, fmt.Errorf("broker: connect to %s: %w%s", redact.URLs(strings.Join(urls, ", ")), redact.Error(err, urls...), hint)
	}
	log.Info("connected to external broker", "brokers", redact.URLs(strings.Join(urls, ",")), "client_id", name,
		"qos", cfg.QoS, "tls", tc != nil && anyTLS(urls))
	return cl, nil
}

func anyTLS(urls []string) bool {
	for _, u := range urls {
		if isTLSURL(u) {
			return true
		}
	}
	return false
}

// connectHint says which setting to look at for a failed first connection.
// It names variables, never their values: the password is secret.
func connectHint(err error, cfg Config, tlsUsed bool) string {
	var (
		unknownCA x509.UnknownAuthorityError
		badName   x509.HostnameError
		invalid   x509.CertificateInvalidError
		noHost    *net.DNSError
		netErr    net.Error
	)
	switch {
	case errors.Is(err, packets.ConnErrors[packets.ErrRefusedNotAuthorised]),
		errors.Is(err, packets.ConnErrors[packets.ErrRefusedBadUsernameOrPassword]):
		if cfg.ClientCertFile != "" && cfg.Username == "" {
			return "check the user of MQTT_CLIENT_CERT_FILE, or MQTT_USERNAME and MQTT_PASSWORD"
		}
		return "check MQTT_USERNAME and MQTT_PASSWORD (or MQTT_PASSWORD_FILE)"
	case errors.Is(err, packets.ConnErrors[packets.ErrRefusedIDRejected]):
		return "the broker rejected the client id: check MQTT_NAME"
	case errors.As(err, &unknownCA):
		if cfg.BrokerCertFile == "" {
			return "the broker's certificate is not signed by a CA this system trusts: set MQTT_BROKER_CERT_FILE to the broker's CA"
		}
		return "the broker's certificate is not signed by the CA in MQTT_BROKER_CERT_FILE"
	case errors.As(err, &badName):
		return "the broker's certificate is not valid for the host name: check MQTT_HOST, or set MQTT_TLS_SERVER_NAME to a name in the certificate"
	case errors.As(err, &invalid):
		return "the broker's certificate is not valid: check it against MQTT_BROKER_CERT_FILE"
	case tlsUsed && closedAfterHandshake(err):
		// With TLS 1.3 the broker checks the client certificate after the
		// client finished its handshake: the refusal shows as an alert, a
		// reset or an EOF on the first read or write, not as a Dial error.
		if cfg.ClientCertFile == "" {
			return "the broker closed the TLS connection before answering: if it requires a client certificate, set MQTT_CLIENT_CERT_FILE and MQTT_CLIENT_KEY_FILE"
		}
		return "the broker closed the TLS connection before answering: it may have refused the client certificate in MQTT_CLIENT_CERT_FILE; is it signed by a CA the broker trusts?"
	case strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
		return "the broker does not speak TLS on this port: check MQTT_PORT, or use tcp:// without MQTT_BROKER_CERT_FILE"
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("no broker accepts connections there: check MQTT_HOST and MQTT_PORT (MQTT_PORT=%d is the port of a host given without one)", cfg.Port)
	case errors.As(err, &noHost):
		return "the broker's host name does not resolve: check MQTT_HOST"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "the broker did not answer: check MQTT_HOST and MQTT_PORT, and that no firewall drops the connection"
	}
	return ""
}

// closedAfterHandshake reports whether err is the peer ending the connection
// once it was up: a TLS alert, a reset or an EOF on a read or a write (not on
// the dial).
func closedAfterHandshake(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op == "read" || op.Op == "write" || op.Op == "remote error"
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readPassword returns MQTT_PASSWORD, or the content of MQTT_PASSWORD_FILE
// without its trailing newline. Errors name the file, never the content.
func readPassword(cfg Config) (string, error) {
	if cfg.PasswordFile == "" {
		return cfg.Password, nil
	}
	b, err := os.ReadFile(cfg.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("MQTT_PASSWORD_FILE=%s: %w", cfg.PasswordFile, err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("MQTT_PASSWORD_FILE=%s: the file is empty", cfg.PasswordFile)
	}
	return pw, nil
}

// clientTLS builds the TLS configuration for TLS broker URLs: TLS 1.2 at
// least, the broker's certificate and host name always verified (against the
// CA in MQTT_BROKER_CERT_FILE, or the system's CAs without it), the name
// MQTT_TLS_SERVER_NAME when set, and the client certificate for mutual TLS.
func clientTLS(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName}
	if cfg.BrokerCertFile != "" {
		pem, err := os.ReadFile(cfg.BrokerCertFile)
		if err != nil {
			return nil, fmt.Errorf("MQTT_BROKER_CERT_FILE=%s: %w", cfg.BrokerCertFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("MQTT_BROKER_CERT_FILE=%s: no PEM certificate in the file", cfg.BrokerCertFile)
		}
		tc.RootCAs = pool
	}
	if cfg.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("MQTT_CLIENT_CERT_FILE=%s, MQTT_CLIENT_KEY_FILE=%s: %w", cfg.ClientCertFile, cfg.ClientKeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// resendStore is paho's ordered in-memory store, except that it keeps and
// hands out copies of PUBLISH packets. A Publish that was waiting for the old
// connection is written on the new one while paho's resume sends the same
// message from the store, marked as sent before (DUP): with one packet for
// both, the writer (which sets the packet's length) and resume (which sets
// DUP and reads it) race — a data race inside paho
// (eclipse-paho/paho.mqtt.golang#703), seen here under -race across mosquitto
// restarts. With copies the two share only the topic and the payload, which
// nobody writes. (The message then goes out twice: at QoS 1, at least once.)
type resendStore struct{ *paho.OrderedMemoryStore }

// NewStore is the paho store the client uses: paho's ordered in-memory store
// handing out copies of PUBLISH packets (resendStore). Any paho client that
// publishes at QoS 1 across reconnects (the sensors of the tests) needs the
// same.
func NewStore() paho.Store { return resendStore{paho.NewOrderedMemoryStore()} }

func (s resendStore) Put(key string, p packets.ControlPacket) {
	s.OrderedMemoryStore.Put(key, copyPublish(p))
}

func (s resendStore) Get(key string) packets.ControlPacket {
	return copyPublish(s.OrderedMemoryStore.Get(key))
}

func copyPublish(p packets.ControlPacket) packets.ControlPacket {
	if pub, ok := p.(*packets.PublishPacket); ok {
		c := *pub
		return &c
	}
	return p
}

// onConnect runs (on a goroutine of its own) after every connect: it renews
// the subscriptions, then sends what waited in the offline queue.
func (c *Client) onConnect(pc paho.Client) {
	c.m.connects.Inc()
	c.mu.Lock()
	if !c.up {
		c.up = true
		c.lost = make(chan struct{})
	}
	subs := make(map[string]AckHandler, len(c.subs))
	for f, h := range c.subs {
		subs[f] = h
	}
	c.mu.Unlock()
	// Every SUBSCRIBE goes out before the first SUBACK is awaited: a broker
	// that forgot them drops what is published on their topics until then.
	toks := make(map[string]paho.Token, len(subs))
	for f, h := range subs {
		toks[f] = c.subscribe(pc, f, h)
	}
	for f, tok := range toks {
		if err := subscribed(f, tok); err != nil {
			c.log.Error("mqtt resubscribe failed", "filter", f, "error", err)
		}
	}
	c.drain()
	c.readyOnce.Do(func() { close(c.ready) })
}

// onConnectionLost runs on a goroutine of its own, after paho has stopped
// the connection; it marks the client down (Publish queues from now on) and
// reconnects.
func (c *Client) onConnectionLost(_ paho.Client, err error) {
	c.warn.Log(slog.LevelWarn, "mqtt:lost", "mqtt connection lost", "error", redact.Error(err, c.urls...))
	c.mu.Lock()
	if c.up {
		c.up, c.online = false, false
		close(c.lost)
		c.downAt, c.downBy = time.Now(), redact.Error(err, c.urls...)
	}
	c.mu.Unlock()
	c.m.connectionLost.Inc() // after the state: whoever sees the count sees Publish queue
	c.reconnect()
}

// reconnect connects again until it succeeds or the client is closed: the
// first attempt at once, the next ones reconnectFirstWait apart, doubling up
// to reconnectMaxWait. Each attempt tries every host of MQTT_HOST in order.
func (c *Client) reconnect() {
	start := time.Now()
	var wait time.Duration
	for attempt := 1; ; attempt++ {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
		c.connMu.Lock()
		select {
		case <-c.done: // shutdown has begun: never connect again
			c.connMu.Unlock()
			return
		default:
		}
		tok := c.c.Connect()
		c.connMu.Unlock()
		select {
		case <-tok.Done():
		case <-c.done: // shutdown's Disconnect ends the attempt
			return
		}
		if err := tok.Error(); err != nil {
			err = redact.Error(err, c.urls...)
			c.mu.Lock()
			c.downBy = err
			c.mu.Unlock()
			c.warn.Log(slog.LevelWarn, "mqtt:reconnect", "mqtt reconnect failed", "attempt", attempt, "error", err)
			wait = min(max(2*wait, reconnectFirstWait), reconnectMaxWait)
			continue
		}
		c.warn.Log(slog.LevelInfo, "mqtt:reconnected", "mqtt reconnected", "attempts", attempt,
			"after", time.Since(start).Round(time.Millisecond))
		return
	}
}

// drain hands the offline queue to paho in order, then lets Publish go
// straight through. It does not wait for the acknowledgements one by one
// (a round trip each); they are counted as they come.
func (c *Client) drain() {
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	var sent []paho.Token
	for {
		c.mu.Lock()
		if !c.up {
			c.mu.Unlock()
			break // lost again; the next onConnect goes on
		}
		if len(c.queue) == 0 {
			c.online = true
			c.queue = nil
			c.mu.Unlock()
			break
		}
		m := c.queue[0]
		c.queue[0] = outgoing{}
		c.queue = c.queue[1:]
		c.mu.Unlock()
		// If the connection drops from here on, paho keeps a QoS 1/2
		// message in its session store and sends it after the reconnect.
		tok := c.c.Publish(m.topic, c.qos, false, m.payload)
		if refused(tok) {
			c.requeue(m) // the connection dropped before paho took it
			break
		}
		sent = append(sent, tok)
	}
	if len(sent) == 0 {
		return
	}
	c.log.Info("mqtt offline queue sent", "messages", len(sent))
	go func() {
		for _, tok := range sent {
			select {
			case <-tok.Done():
				c.settle(tok)
			case <-c.done:
				return
			}
		}
	}()
}

// requeue puts m back at the head of the offline queue.
func (c *Client) requeue(m outgoing) {
	c.mu.Lock()
	c.queue = append([]outgoing{m}, c.queue...)
	c.mu.Unlock()
}

// refused reports whether paho refused a publish at once because the
// connection is down: it did not take the message, which is still ours to
// send. Any other publish has a packet id (QoS 1/2) and sits in paho's
// session store until acknowledged, across reconnects.
func refused(tok paho.Token) bool {
	select {
	case <-tok.Done():
		return errors.Is(tok.Error(), paho.ErrNotConnected)
	default:
		return false
	}
}

// settle counts how a publish paho took ended and returns its error: nil
// also when the connection broke as paho wrote the message, which it keeps
// and sends again after the reconnect (a QoS 1/2 message with a packet id).
func (c *Client) settle(tok paho.Token) error {
	err := tok.Error()
	switch {
	case err == nil:
		c.m.published.Inc()
		return nil
	case held(tok):
		c.m.resent.Inc()
		return nil
	}
	c.m.publishErrors.Inc()
	c.warn.Log(slog.LevelWarn, "mqtt:publish", "mqtt publish failed", "error", err)
	return err
}

// held reports whether paho keeps a failed publish in its session store:
// it gave it a packet id, so it was stored before being written, and is
// deleted only when the broker acknowledges it.
func held(tok paho.Token) bool {
	pt, ok := tok.(*paho.PublishToken)
	return ok && pt.MessageID() != 0
}

// subscribe sends a SUBSCRIBE for filter; subscribed waits for its SUBACK.
func (c *Client) subscribe(pc paho.Client, filter string, h AckHandler) paho.Token {
	return pc.Subscribe(filter, c.qos, func(_ paho.Client, m paho.Message) {
		h(m.Topic(), m.Payload(), m.Ack)
	})
}

func subscribed(filter string, tok paho.Token) error {
	if !tok.WaitTimeout(subscribeTimeout) {
		return fmt.Errorf("broker: subscribe %s: no SUBACK within %s", filter, subscribeTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	return nil
}

// Subscribe registers h for filter now and after every reconnect. A
// message is acknowledged when h returns.
func (c *Client) Subscribe(filter string, h Handler) error {
	return c.add(filter, func(r *route) { r.sync = append(r.sync, h) })
}

// SubscribeAck is Subscribe for a handler that acknowledges each message
// itself, once it settled. It must always do so while the process lives:
// the broker sends a client only so many unacknowledged QoS 1/2 messages
// (mosquitto's max_inflight_messages, 20 by default), then waits.
func (c *Client) SubscribeAck(filter string, h AckHandler) error {
	return c.add(filter, func(r *route) { r.async = append(r.async, h) })
}

// add puts a handler on filter's route — a second subscription to a filter
// shares it (the live view follows the pipeline's topics), as paho and the
// broker keep one subscription per filter — hands it the messages held for
// the filter, and subscribes.
func (c *Client) add(filter string, put func(*route)) error {
	c.mu.Lock()
	r := &route{}
	if old, ok := c.routes[filter]; ok {
		r.sync, r.async = slices.Clone(old.sync), slices.Clone(old.async)
	}
	put(r)
	c.routes[filter] = r
	h := r.deliver
	c.subs[filter] = h
	var held []paho.Message
	kept := c.early[:0]
	for _, m := range c.early {
		if matches(filter, m.Topic()) {
			held = append(held, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(c.early[len(kept):])
	c.early = kept
	up := c.up
	c.mu.Unlock()
	for _, m := range held {
		h(m.Topic(), m.Payload(), m.Ack)
	}
	if !up || !c.c.IsConnectionOpen() {
		return nil // onConnect subscribes
	}
	return subscribed(filter, c.subscribe(c.c, filter, h))
}

// route is what one filter's messages go to: handlers that are done when
// they return, then handlers that acknowledge a message themselves.
type route struct {
	sync  []Handler
	async []AckHandler
}

// deliver hands a message to every handler; it is acknowledged once each is
// done with it. With at most one handler acknowledging itself (the
// pipeline's, beside the live view's) it allocates nothing per message.
func (r *route) deliver(topic string, payload []byte, ack func()) {
	for _, h := range r.sync {
		h(topic, payload)
	}
	switch len(r.async) {
	case 0:
		ack()
	case 1:
		r.async[0](topic, payload, ack)
	default:
		left := new(atomic.Int32)
		left.Store(int32(len(r.async)))
		one := func() {
			if left.Add(-1) == 0 {
				ack()
			}
		}
		for _, h := range r.async {
			h(topic, payload, sync.OnceFunc(one))
		}
	}
}

// earlyCap bounds the messages held for a subscription not made yet. The
// broker sends a session no more unacknowledged QoS 1/2 messages than its
// in-flight window (mosquitto: max_inflight_messages, 20), so this is
// reached only with a window set far larger.
const earlyCap = 1000

// unrouted takes a message no subscription's route matched: one the broker
// sent for the session before the client subscribed again, or one that
// arrived while a subscription was being made. A subscription made since
// gets it; else it is held for the one to come, until earlyCap; beyond,
// it is acknowledged and dropped, counted and logged.
func (c *Client) unrouted(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	for f, h := range c.subs {
		if matches(f, m.Topic()) {
			c.mu.Unlock()
			h(m.Topic(), m.Payload(), m.Ack)
			return
		}
	}
	if len(c.early) < earlyCap {
		c.early = append(c.early, m)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	m.Ack()
	c.m.earlyDropped.Inc()
	c.warn.Log(slog.LevelWarn, "mqtt:early_dropped", "message before its subscription dropped: too many held", "topic", m.Topic(), "held", earlyCap)
}

// matches reports whether filter (a subscription, shared or not) matches
// topic, by the MQTT rules for + and #.
func matches(filter, topic string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, filter, _ = strings.Cut(rest, "/")
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		switch {
		case f == "#":
			return true
		case i >= len(ts):
			return false
		case f != "+" && f != ts[i]:
			return false
		}
	}
	return len(fs) == len(ts)
}

// Publish sends a copy of payload at MQTT_QOS. Connected, it waits until the
// message is written (QoS 0) or acknowledged (QoS 1 and 2), or ctx is done, or
// the connection drops (paho then sends a QoS 1/2 message again after the
// reconnect). Disconnected, it never waits: the message joins the offline
// queue, sent in order after the reconnect, or, when the queue is full, is
// dropped with ErrOfflineQueueFull. A publish the connection drops under is
// no error: it is either in paho's session store or in the offline queue.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	payload = append([]byte(nil), payload...)
	for {
		c.mu.Lock()
		if !c.online {
			if len(c.queue) >= c.queueCap {
				c.mu.Unlock()
				c.m.offlineDropped.Inc()
				c.warn.Log(slog.LevelWarn, "mqtt:offline_dropped", "mqtt offline queue full: dropping publishes", "topic", topic,
					"queue", c.queueCap)
				return fmt.Errorf("broker: publish %s: %w (MQTT_OFFLINE_QUEUE=%d)", topic, ErrOfflineQueueFull, c.queueCap)
			}
			c.queue = append(c.queue, outgoing{topic, payload})
			c.mu.Unlock()
			c.m.offlineQueued.Inc()
			return nil
		}
		lost := c.lost
		c.mu.Unlock()

		tok := c.c.Publish(topic, c.qos, false, payload)
		if refused(tok) {
			// paho saw the connection go before onConnectionLost ran:
			// once it has, the message is queued.
			select {
			case <-lost:
				continue
			case <-c.done:
				return ErrClosed
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case <-tok.Done():
			if err := c.settle(tok); err != nil {
				return fmt.Errorf("broker: publish %s: %w", topic, err)
			}
			return nil
		case <-lost:
			// paho holds the message (QoS 1/2) for the next connection; do
			// not keep the caller until then.
			go c.await(tok)
			return nil
		case <-ctx.Done():
			go c.await(tok)
			return ctx.Err()
		}
	}
}

// await counts a publish whose caller did not wait for it.
func (c *Client) await(tok paho.Token) {
	select {
	case <-tok.Done():
		c.settle(tok)
	case <-c.done:
	}
}

// Ready is closed once the first connection is up and subscribed.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Connected is nil while the connection to the broker is up, else an error
// saying for how long it has been down and why (the loss, or the last
// reconnect attempt's failure), without credentials.
func (c *Client) Connected() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up {
		return nil
	}
	if c.downAt.IsZero() {
		return errors.New("not connected to the external broker (MQTT_HOST) yet")
	}
	why := c.downBy
	if why == nil {
		why = errors.New("connection lost")
	}
	return fmt.Errorf("disconnected from the external broker (MQTT_HOST) for %s, reconnecting: %w",
		time.Since(c.downAt).Round(time.Second), why)
}

// Addr is empty: an external broker's address is in MQTT_HOST.
func (c *Client) Addr() string { return "" }

// Close disconnects at once; for a client that never ran. It is idempotent.
func (c *Client) Close() error {
	c.shutdown(0)
	return nil
}

// Run keeps the connection until ctx is done, then disconnects cleanly.
func (c *Client) Run(ctx context.Context) error {
	<-ctx.Done()
	c.shutdown(250)
	return nil
}

// shutdown stops the client once; publishes still in the offline queue are
// dropped, counted and logged.
func (c *Client) shutdown(quiesceMillis uint) {
	c.closeOnce.Do(func() {
		c.connMu.Lock() // no reconnect attempt starts after this
		close(c.done)
		c.connMu.Unlock()
		c.c.Disconnect(quiesceMillis)
		c.mu.Lock()
		n := len(c.queue)
		c.queue = nil
		c.mu.Unlock()
		if n > 0 {
			c.m.offlineDropped.Add(float64(n))
			c.log.Warn("mqtt offline queue dropped at shutdown", "messages", n)
		}
	})
}
