package broker

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// readBuffer is what one read from the broker's connection may take in.
const readBuffer = 32 << 10

// openConnection opens the network connection to one broker as paho would
// (TCP, TLS, WebSocket, a Unix socket; a proxy from the environment), and
// buffers its reads. paho reads each packet's fixed header a byte at a time
// and then its body, straight from the connection: four system calls for a
// move's PUBLISH, which the profile of a storeflow on mosquitto put at 42 %
// of its CPU. Buffered, one read takes in as many packets as have arrived.
func openConnection(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	tc := serverNameFor(uri, o.TLSConfig)
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "ws", "wss":
		u := *uri
		u.User = nil // the login goes in CONNECT, not in the URL
		if uri.Scheme == "ws" {
			tc = nil
		}
		conn, err = paho.NewWebsocket(u.String(), tc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "mqtt", "tcp":
		conn, err = proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	case "unix":
		path := uri.Host
		if path == "" {
			path = uri.Path
		}
		conn, err = dialer.Dial("unix", path)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		if os.Getenv("all_proxy") == "" {
			conn, err = tls.DialWithDialer(dialer, "tcp", uri.Host, tc)
			break
		}
		var raw net.Conn
		if raw, err = proxy.FromEnvironment().Dial("tcp", uri.Host); err != nil {
			break
		}
		t := tls.Client(raw, tc)
		if err = t.Handshake(); err != nil {
			_ = raw.Close()
			break
		}
		conn = t
	default:
		err = errors.New("unknown protocol " + uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, readBuffer)}, nil
}

// serverNameFor fills in the name to verify the broker's certificate
// against, from the broker's URL, when the configuration does not give one
// (MQTT_TLS_SERVER_NAME).
func serverNameFor(uri *url.URL, tc *tls.Config) *tls.Config {
	if tc != nil && tc.ServerName == "" {
		tc = tc.Clone()
		tc.ServerName = uri.Hostname()
	}
	return tc
}

// bufferedConn is a connection whose reads go through a buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
