package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Client is a connection to an external broker. Subscriptions are remembered
// and renewed on every reconnect.
type Client struct {
	c     paho.Client
	qos   byte
	log   *slog.Logger
	mu    sync.Mutex
	subs  map[string]Handler
	ready chan struct{}
	once  sync.Once
}

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
			return nil, fmt.Errorf("MQTT_HOST=%q: empty host in the list", cfg.Host)
		case strings.Contains(h, "://"):
			// Fix: a tcp or TLS URL without a port (ssl://broker.example.com)
			// used to be passed on as is, and paho dials "host" with no port
			// ("missing port in address"). The README promises MQTT_PORT for
			// every entry without one. ws, wss and unix URLs go through as
			// given: their dialers have defaults of their own.
			u, err := url.Parse(h)
			if err != nil {
				return nil, fmt.Errorf("MQTT_HOST=%q: %q is not a broker URL: %v", cfg.Host, h, err)
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

// Dial connects to the external broker and fails fast: a refused connection,
// a bad password or a certificate problem is an error here, not a retry loop.
// After the first connection, the client reconnects on its own.
func Dial(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	urls, err := BrokerURLs(cfg)
	if err != nil {
		return nil, err
	}
	cl := &Client{qos: cfg.QoS, log: log, subs: map[string]Handler{}, ready: make(chan struct{})}
	opts := paho.NewClientOptions().
		SetClientID(cfg.Name).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true). // per-shopper order: handlers run one after another
		SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			log.Warn("mqtt connection lost", "error", err)
		})
	for _, u := range urls {
		opts.AddBroker(u)
	}
	if cfg.BrokerCertFile != "" {
		tc, err := caTLS(cfg.BrokerCertFile)
		if err != nil {
			return nil, err
		}
		opts.SetTLSConfig(tc)
	}
	cl.c = paho.NewClient(opts)
	tok := cl.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// Fix: paho goes on with the attempt; a connection that still comes up
		// would be left open (and reconnecting) with nobody to close it.
		go func() {
			<-tok.Done()
			cl.c.Disconnect(0)
		}()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		// Fix: paho's "not Authorized" alone does not say which setting to
		// look at; name the variables (never their values: the password is secret).
		hint := ""
		if errors.Is(err, packets.ConnErrors[packets.ErrRefusedNotAuthorised]) ||
			errors.Is(err, packets.ConnErrors[packets.ErrRefusedBadUsernameOrPassword]) {
			hint = " (check MQTT_USERNAME and MQTT_PASSWORD)"
		}
		return nil, fmt.Errorf("broker: connect to %s: %w%s", strings.Join(urls, ", "), err, hint)
	}
	log.Info("connected to external broker", "brokers", strings.Join(urls, ","), "client_id", cfg.Name)
	return cl, nil
}

// caTLS builds a TLS configuration that trusts only the given CA and verifies
// the broker's certificate and host name.
func caTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("MQTT_BROKER_CERT_FILE=%s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("MQTT_BROKER_CERT_FILE=%s: no PEM certificate in the file", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// onConnect renews every subscription; it runs on each (re)connect.
func (c *Client) onConnect(pc paho.Client) {
	c.mu.Lock()
	subs := make(map[string]Handler, len(c.subs))
	for f, h := range c.subs {
		subs[f] = h
	}
	c.mu.Unlock()
	for f, h := range subs {
		if err := c.subscribe(pc, f, h); err != nil {
			c.log.Error("mqtt resubscribe failed", "filter", f, "error", err)
		}
	}
	c.once.Do(func() { close(c.ready) })
}

func (c *Client) subscribe(pc paho.Client, filter string, h Handler) error {
	tok := pc.Subscribe(filter, c.qos, func(_ paho.Client, m paho.Message) {
		h(m.Topic(), m.Payload())
	})
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("broker: subscribe %s: no SUBACK within 10s", filter)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", filter, err)
	}
	return nil
}

// Subscribe registers h for filter now and after every reconnect.
func (c *Client) Subscribe(filter string, h Handler) error {
	c.mu.Lock()
	c.subs[filter] = h
	c.mu.Unlock()
	if !c.c.IsConnectionOpen() {
		return nil // onConnect subscribes
	}
	return c.subscribe(c.c, filter, h)
}

// Publish sends payload and waits until it is written (QoS 0) or acknowledged
// (QoS 1 and 2), or ctx is done.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	if !c.c.IsConnected() && !c.c.IsConnectionOpen() {
		return ErrClosed
	}
	tok := c.c.Publish(topic, c.qos, false, append([]byte(nil), payload...))
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("broker: publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready is closed once the first connection is up and subscribed.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Addr is empty: an external broker's address is in MQTT_HOST.
func (c *Client) Addr() string { return "" }

// Close disconnects at once; for a client that never ran.
func (c *Client) Close() error {
	c.c.Disconnect(0)
	return nil
}

// Run keeps the connection until ctx is done, then disconnects cleanly.
func (c *Client) Run(ctx context.Context) error {
	<-ctx.Done()
	c.c.Disconnect(250)
	return nil
}
