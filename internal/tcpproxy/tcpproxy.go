// Package tcpproxy plays a flaky network between a client and a real server
// in tests: a TCP proxy on a free loopback port that passes bytes both ways
// until the test cuts the connections, holds back what the client sends, or
// makes the server look like it refuses connections. It is stopped when the
// test ends.
package tcpproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards connections from its address to a target address.
type Proxy struct {
	l      net.Listener
	target string

	refuse  atomic.Bool  // close new connections at once
	refused atomic.Int64 // connections closed because of refuse

	mu    sync.Mutex
	conns map[*pair]struct{}
	wg    sync.WaitGroup
}

// pair is one client connection and its connection to the target.
type pair struct {
	client, server net.Conn
	hold           atomic.Bool // drop what the client sends instead of passing it on
}

// Start listens on a free loopback port and forwards every connection to
// target (host:port).
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, target: target, conns: map[*pair]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		l.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port: what the client dials.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return // closed at the end of the test
		}
		if p.refuse.Load() {
			p.refused.Add(1)
			abort(c)
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			abort(c) // the target is down: the client sees a closed connection
			continue
		}
		cp := &pair{client: c, server: s}
		p.mu.Lock()
		p.conns[cp] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(cp, s, c, &cp.hold) }) // client → server: held by Hold
		p.wg.Go(func() { p.pipe(cp, c, s, nil) })
	}
}

// pipe copies from src to dst until either side closes; while hold is set,
// what src sends is read and dropped.
func (p *Proxy) pipe(cp *pair, dst, src net.Conn, hold *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (hold == nil || !hold.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil { // either side closed or was cut: end both
			p.close(cp)
			return
		}
	}
}

func (p *Proxy) close(cp *pair) {
	p.mu.Lock()
	delete(p.conns, cp)
	p.mu.Unlock()
	abort(cp.client)
	abort(cp.server)
}

// Cut resets every open connection, both sides, at once: what was held back
// is lost. New connections are forwarded (or refused) as before.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := make([]*pair, 0, len(p.conns))
	for cp := range p.conns {
		conns = append(conns, cp)
	}
	p.mu.Unlock()
	for _, cp := range conns {
		p.close(cp)
	}
}

// Hold stops passing on what clients send on the open connections (what the
// server sends still arrives): the server never sees the client's answers,
// as when a connection dies with them on the way. Connections made later are
// not held.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for cp := range p.conns {
		cp.hold.Store(true)
	}
}

// Refuse makes the proxy close new connections at once (on) — a server that
// answers but will not talk — or forward them again (off).
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// Refused is the number of connections closed because of Refuse.
func (p *Proxy) Refused() int64 { return p.refused.Load() }

// abort closes c with a reset rather than an orderly close, so the peer's
// next read or write fails at once, as when a server dies.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
