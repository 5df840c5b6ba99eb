package broker

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/storeflow/storeflow/internal/harness"
)

// connectPacket is an MQTT 3.1.1 CONNECT with client id "c" and a clean
// session: enough for mochi to register the client.
var connectPacket = []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}

// Clients connect and disconnect as fast as they can while the broker stops.
// mochi's own listener lets a connection being established count itself
// while Close already waits for the count (a data race under -race, and
// the cause of a failed CI run); the gate must make every stop clean.
func TestEmbeddedStopsCleanlyDuringConnectionChurn(t *testing.T) {
	for round := range 20 {
		b, stopBroker := startEmbedded(t, Config{ListenAddr: "127.0.0.1:0", Name: "test"})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
					if err != nil {
						continue // the listener is closing
					}
					_, _ = c.Write(connectPacket)
					_ = c.Close()
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		stopBroker(10 * time.Second)
		close(stop)
		wg.Wait()
	}
}

// A client that opens a connection and never sends CONNECT is not yet one of
// mochi's clients, so mochi's Close would wait for it forever; the listener
// closes it.
func TestEmbeddedStopsWithSilentConnections(t *testing.T) {
	for _, cfg := range []Config{
		{ListenAddr: "127.0.0.1:0", Name: "test"},
		{ListenAddr: "127.0.0.1:0", Name: "test", WSListenAddr: "127.0.0.1:0"},
	} {
		b, stopBroker := startEmbedded(t, cfg)
		addr := b.Addr()
		if cfg.WSListenAddr != "" {
			addr = b.WSAddr()
		}
		// One client connected over TCP, to be told goodbye.
		hello := dialTCP(t, b.Addr())
		_, _ = hello.Write(connectPacket)
		connack := make([]byte, 4)
		_ = hello.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(hello, connack); err != nil || connack[0] != 0x20 || connack[3] != 0 {
			t.Fatalf("CONNACK = %x, %v", connack, err)
		}

		silent := dialTCP(t, addr)
		if cfg.WSListenAddr != "" {
			// A finished upgrade, then nothing.
			_, _ = silent.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"))
			buf := make([]byte, 512)
			_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := silent.Read(buf); err != nil || string(buf[:12]) != "HTTP/1.1 101" {
				t.Fatalf("websocket upgrade answered %q, %v", buf[:n], err)
			}
		}
		// Stop only once the listener has taken the silent connection in:
		// one refused at the door would pass without testing the stop.
		adm := b.tcp.gate.adm
		harness.Until(t, 5*time.Second, addr+": the broker holds both connections", func() bool { return adm.open.Load() == 2 })
		stopBroker(5 * time.Second)

		// The connected MQTT 3.1.1 client saw its connection closed: that
		// protocol has no DISCONNECT from the server (mochi sent one, e000).
		_ = hello.SetReadDeadline(time.Now().Add(5 * time.Second))
		if rest, err := io.ReadAll(hello); err != nil || len(rest) != 0 {
			t.Errorf("connected client got %x, %v after the stop; want EOF and nothing before it", rest, err)
		}
		// The broker closed the silent connection.
		_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: silent connection still open after the broker stopped", addr)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: silent connection still open after the broker stopped", addr)
		}
	}
}
