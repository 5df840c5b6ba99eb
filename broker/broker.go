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
)

// ErrClosed is returned by Publish once the broker or connection has stopped.
var ErrClosed = errors.New("broker: closed")

// Handler receives one message. payload is only valid during the call.
type Handler = func(topic string, payload []byte)

// Config selects and sets up the MQTT side. Names and defaults are the seeds'.
type Config struct {
	Host           string `env:"MQTT_HOST"`                         // empty: embed a broker; else the external broker
	Port           int    `env:"MQTT_PORT" envDefault:"1883"`       // external broker port; embedded listener port by default
	Username       string `env:"MQTT_USERNAME"`                     //
	Password       string `env:"MQTT_PASSWORD"`                     // secret: never logged
	BrokerCertFile string `env:"MQTT_BROKER_CERT_FILE"`             // CA that signs the external broker; turns TLS on
	Name           string `env:"MQTT_NAME" envDefault:"demoClient"` // client id with an external broker
	ListenAddr     string `env:"BROKER_LISTEN_ADDR"`                // embedded listener; default 127.0.0.1:$MQTT_PORT
	QoS            byte   `env:"MQTT_QOS" envDefault:"0"`           // QoS of subscriptions and publishes
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
		if _, _, err := net.SplitHostPort(c.Listen()); err != nil {
			errs = append(errs, fmt.Errorf("BROKER_LISTEN_ADDR=%q: want host:port: %v", c.ListenAddr, err))
		}
	} else {
		for _, h := range strings.Split(c.Host, ",") {
			if strings.TrimSpace(h) == "" {
				errs = append(errs, fmt.Errorf("MQTT_HOST=%q: empty host in the list", c.Host))
			}
		}
	}
	return errors.Join(errs...)
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
