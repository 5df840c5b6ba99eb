// Package broker owns MQTT in and out, with one surface for two modes: an
// embedded mochi-mqtt v2 broker, used through its inline client so the hot path
// never crosses TCP, or an external broker reached with paho.
//
// Handlers run on the broker's delivery goroutine (mochi calls inline handlers
// synchronously from the publisher; paho calls them from its router). They must
// not do I/O: decode, hand the result to a bounded queue, return.
package broker

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/storeflow/storeflow/internal/redact"
)

// ErrClosed is returned by Publish once the broker or connection has stopped.
var ErrClosed = errors.New("broker: closed")

// Handler receives one message. payload is only valid during the call.
type Handler = func(topic string, payload []byte)

// AckHandler receives one message and acknowledges it later, by calling ack
// (once; more calls do nothing) when what the message started has settled:
// from an external broker, a QoS 1/2 message that was never acknowledged
// (the process died first) is delivered again to the session. payload is
// only valid during the call; ack may be called from any goroutine.
type AckHandler = func(topic string, payload []byte, ack func())

// Config selects and sets up the MQTT side. Names and defaults are the seeds'.
type Config struct {
	Host           string `env:"MQTT_HOST"`                            // empty: embed a broker; else the external broker
	Port           int    `env:"MQTT_PORT" envDefault:"1883"`          // external broker port; embedded listener port by default
	Username       string `env:"MQTT_USERNAME"`                        //
	Password       string `env:"MQTT_PASSWORD"`                        // secret: never logged
	PasswordFile   string `env:"MQTT_PASSWORD_FILE"`                   // file holding the password (instead of MQTT_PASSWORD)
	BrokerCertFile string `env:"MQTT_BROKER_CERT_FILE"`                // CA that signs the external broker; turns TLS on
	ClientCertFile string `env:"MQTT_CLIENT_CERT_FILE"`                // client certificate for mutual TLS
	ClientKeyFile  string `env:"MQTT_CLIENT_KEY_FILE"`                 // its private key
	TLSServerName  string `env:"MQTT_TLS_SERVER_NAME"`                 // name to verify the broker's certificate against; default: the host
	Name           string `env:"MQTT_NAME" envDefault:"demoClient"`    // client id with an external broker
	QoS            byte   `env:"MQTT_QOS" envDefault:"1"`              // QoS of subscriptions and publishes on an external broker
	OfflineQueue   int    `env:"MQTT_OFFLINE_QUEUE" envDefault:"1000"` // publishes held while disconnected, at most
	// CleanSession: the broker forgets this client's session when it
	// disconnects. Off for storeflow itself (its session must outlive a
	// broker restart); on for the replay and record tools (ToolClient).
	CleanSession bool `env:"-"`

	// The embedded broker.
	ListenAddr      string `env:"BROKER_LISTEN_ADDR"`                                 // plain TCP listener; default 127.0.0.1:$MQTT_PORT
	TLSListenAddr   string `env:"BROKER_TLS_LISTEN_ADDR" envDefault:"127.0.0.1:8883"` // TLS listener, when BROKER_TLS_CERT_FILE is set
	TLSCertFile     string `env:"BROKER_TLS_CERT_FILE"`                               // server certificate: turns the TLS listener on
	TLSKeyFile      string `env:"BROKER_TLS_KEY_FILE"`                                // its private key
	TLSClientCAFile string `env:"BROKER_TLS_CLIENT_CA_FILE"`                          // require client certificates signed by this CA
	WSListenAddr    string `env:"BROKER_WS_LISTEN_ADDR"`                              // WebSocket listener for browsers; empty: none
	AuthFile        string `env:"BROKER_AUTH_FILE"`                                   // users and per-topic ACLs
	AllowAnonymous  bool   `env:"BROKER_ALLOW_ANONYMOUS" envDefault:"false"`          // anonymous clients on a non-loopback listener without BROKER_AUTH_FILE

	// The embedded broker's limits: what one client, or a crowd of them, may
	// cost before and after it is trusted.
	MaxPacketSize  int           `env:"BROKER_MAX_PACKET_SIZE" envDefault:"16384"` // largest MQTT packet accepted from a client, bytes
	MaxConnections int           `env:"BROKER_MAX_CONNECTIONS" envDefault:"10000"` // open client connections, CONNECT sent or not
	ConnectTimeout time.Duration `env:"BROKER_CONNECT_TIMEOUT" envDefault:"10s"`   // from accept (and TLS handshake) to a complete CONNECT
	MaxRetained    int           `env:"BROKER_MAX_RETAINED" envDefault:"1000"`     // retained messages held, $SYS included
	ClientQueue    int           `env:"BROKER_CLIENT_QUEUE" envDefault:"8192"`     // messages waiting to be written to one connected client
	SessionQueue   int           `env:"BROKER_SESSION_QUEUE" envDefault:"1000"`    // QoS 1/2 messages kept for one offline persistent session
	SessionExpiry  time.Duration `env:"BROKER_SESSION_EXPIRY" envDefault:"1h"`     // how long an offline persistent session is kept, at most
}

// Defaults of the embedded broker's limits, as in the env tags above.
const (
	defaultMaxPacketSize  = 16384
	defaultMaxConnections = 10000
	defaultConnectTimeout = 10 * time.Second
	defaultMaxRetained    = 1000
	defaultClientQueue    = 8192
	defaultSessionQueue   = 1000
	defaultSessionExpiry  = time.Hour
)

// withLimitDefaults fills limits left at zero (in the environment, or in a
// Config built in code): 0 means the default.
func (c Config) withLimitDefaults() Config {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.MaxPacketSize, defaultMaxPacketSize)
	set(&c.MaxConnections, defaultMaxConnections)
	set(&c.ClientQueue, defaultClientQueue)
	set(&c.SessionQueue, defaultSessionQueue)
	set(&c.MaxRetained, defaultMaxRetained)
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = defaultSessionExpiry
	}
	return c
}

// Embedded reports whether this configuration embeds the broker.
func (c Config) Embedded() bool { return c.Host == "" }

// Listen returns the embedded broker's listen address.
func (c Config) Listen() string {
	if c.ListenAddr != "" {
		return c.ListenAddr
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
}

// Validate checks the values; errors name the variable and the value.
func (c Config) Validate() error {
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("MQTT_PORT=%d: must be a port number 1..65535", c.Port))
	}
	if c.QoS > 2 {
		errs = append(errs, fmt.Errorf("MQTT_QOS=%d: must be 0, 1 or 2", c.QoS))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("MQTT_NAME is empty: it names this client to the broker"))
	}
	if c.Embedded() {
		errs = append(errs, c.validateEmbedded()...)
	} else {
		errs = append(errs, validateExternal(c)...)
	}
	return errors.Join(errs...)
}

// maxClientID is the longest client id every MQTT 3.1.1 broker must accept
// (§3.1.3.1: 1 to 23 bytes).
const maxClientID = 23

// validateExternal checks the settings of the client of an external broker.
func validateExternal(c Config) []error {
	var errs []error
	for _, h := range strings.Split(c.Host, ",") {
		if strings.TrimSpace(h) == "" {
			errs = append(errs, fmt.Errorf("MQTT_HOST=%q: empty host in the list", redact.URLs(c.Host)))
			break
		}
	}
	// The client id names a persistent session on the broker. MQTT 3.1.1
	// only promises ids of 1 to 23 bytes of [0-9a-zA-Z]; '-' and '_' are
	// accepted by every broker in use (mosquitto, EMQX, HiveMQ, VerneMQ,
	// AWS IoT), so they are allowed too. Longer or other ids work on some
	// brokers and are refused by others: refuse them here, before deploying.
	// storeflow connects twice, as MQTT_NAME and MQTT_NAME-pub (Connection).
	if len(c.Name)+len(publishSuffix) > maxClientID || strings.IndexFunc(c.Name, func(r rune) bool { return !clientIDRune(r) }) >= 0 {
		errs = append(errs, fmt.Errorf("MQTT_NAME=%q: want 1 to %d characters of 0-9 A-Z a-z - _ (with %q appended for storeflow's publishing connection, a client id every MQTT 3.1.1 broker accepts), unique per instance",
			c.Name, maxClientID-len(publishSuffix), publishSuffix))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("MQTT_PASSWORD and MQTT_PASSWORD_FILE are both set: set one"))
	}
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		errs = append(errs, fmt.Errorf("MQTT_CLIENT_CERT_FILE=%q and MQTT_CLIENT_KEY_FILE=%q: set both for mutual TLS, or neither", c.ClientCertFile, c.ClientKeyFile))
	}
	if c.OfflineQueue < 0 {
		errs = append(errs, fmt.Errorf("MQTT_OFFLINE_QUEUE=%d: must be 0 or more", c.OfflineQueue))
	}
	if c.ClientCertFile != "" || c.TLSServerName != "" {
		if urls, err := BrokerURLs(c); err == nil && !anyTLS(urls) {
			errs = append(errs, fmt.Errorf("MQTT_HOST=%q uses no TLS, but MQTT_CLIENT_CERT_FILE or MQTT_TLS_SERVER_NAME is set: set MQTT_BROKER_CERT_FILE or use ssl:// hosts", redact.URLs(c.Host)))
		}
	}
	return errs
}

func clientIDRune(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_'
}

// validateEmbedded checks the BROKER_* values. Whether a listener is open to
// the network without auth is NewEmbedded's check, where the listeners bind.
func (c Config) validateEmbedded() []error {
	var errs []error
	c = c.withLimitDefaults()
	addr := func(env, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want host:port: %v", env, v, err))
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen()); err != nil {
		errs = append(errs, fmt.Errorf("BROKER_LISTEN_ADDR=%q: want host:port: %v", c.ListenAddr, err))
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		errs = append(errs, errors.New("BROKER_TLS_CERT_FILE is set but BROKER_TLS_KEY_FILE is empty: the TLS listener needs both"))
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		errs = append(errs, errors.New("BROKER_TLS_KEY_FILE is set but BROKER_TLS_CERT_FILE is empty: the TLS listener needs both"))
	case c.TLSCertFile == "" && c.TLSClientCAFile != "":
		errs = append(errs, errors.New("BROKER_TLS_CLIENT_CA_FILE is set but BROKER_TLS_CERT_FILE is empty: client certificates need the TLS listener"))
	}
	if c.TLSCertFile != "" {
		addr("BROKER_TLS_LISTEN_ADDR", c.TLSListenAddr)
	}
	if c.WSListenAddr != "" {
		addr("BROKER_WS_LISTEN_ADDR", c.WSListenAddr)
	}
	for _, l := range []struct {
		env       string
		v, lo, hi int
		why       string
	}{
		// A packet must hold a CONNECT and a sensor event (event.MaxPayload
		// is 4096); 268435455 is MQTT's own ceiling.
		{"BROKER_MAX_PACKET_SIZE", c.MaxPacketSize, 4096 + 512, 268435455, "bytes"},
		{"BROKER_MAX_CONNECTIONS", c.MaxConnections, 1, 10_000_000, "connections"},
		{"BROKER_MAX_RETAINED", c.MaxRetained, 1, 10_000_000, "messages"},
		{"BROKER_CLIENT_QUEUE", c.ClientQueue, 1, 1 << 20, "messages"},
		// Packet ids are 16 bits: a session cannot hold more QoS 1 messages.
		{"BROKER_SESSION_QUEUE", c.SessionQueue, 1, 16384, "messages"},
	} {
		if l.v < l.lo || l.v > l.hi {
			errs = append(errs, fmt.Errorf("%s=%d: want %d..%d %s", l.env, l.v, l.lo, l.hi, l.why))
		}
	}
	if c.ConnectTimeout < 0 || c.ConnectTimeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("BROKER_CONNECT_TIMEOUT=%s: want more than 0 and at most 5m", c.ConnectTimeout))
	}
	if c.SessionExpiry < time.Second || c.SessionExpiry > 365*24*time.Hour {
		errs = append(errs, fmt.Errorf("BROKER_SESSION_EXPIRY=%s: want 1s to 8760h", c.SessionExpiry))
	}
	return errs
}

// ValidTopic reports whether name can be published to: non-empty, no wildcards.
func ValidTopic(name string) error {
	if name == "" {
		return errors.New("empty topic")
	}
	if strings.ContainsAny(name, "+#\x00") {
		return fmt.Errorf("topic %q contains a wildcard or NUL", name)
	}
	return nil
}

// isLoopback reports whether a listen address only accepts local connections.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
