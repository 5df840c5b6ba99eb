package broker

import (
	"net"
)

// ToolClient returns the settings a command-line tool (storeflow replay,
// storeflow record) connects with, from the same variables storeflow runs
// with: the external broker of MQTT_HOST with its port, TLS and credentials,
// or, when storeflow embeds its broker, that broker's plain listener
// (BROKER_LISTEN_ADDR, default 127.0.0.1:MQTT_PORT; an address listening on
// every interface is reached on loopback), logging in with MQTT_USERNAME and
// MQTT_PASSWORD when BROKER_AUTH_FILE asks for a user. The tool gets its own
// client id and a clean session: it must not take over the session of a
// storeflow running under MQTT_NAME, nor leave one behind on the broker.
func (c Config) ToolClient(id string) Config {
	out := c
	out.Name = id
	out.CleanSession = true
	if c.Embedded() {
		host, port, _ := net.SplitHostPort(c.Listen()) // Validate checked it
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		out.Host = "tcp://" + net.JoinHostPort(host, port)
		// The embedded broker's listener is plain TCP: the CA and client
		// certificate settings are for an external broker.
		out.BrokerCertFile, out.ClientCertFile, out.ClientKeyFile, out.TLSServerName = "", "", "", ""
	}
	return out
}
