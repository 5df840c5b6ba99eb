package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storeflow/storeflow/internal/bounded"
	"github.com/storeflow/storeflow/internal/ratelog"
)

// logEvery is how often one kind of refusal or drop is logged, at most; the
// counters have every one.
const logEvery = 10 * time.Second

// admission is what every listener asks before it hands a connection to
// mochi: a cap on open connections (across listeners, before any CONNECT,
// so a crowd of silent connections cannot use up the file descriptors the
// HTTP endpoints need) and the deadline for the CONNECT.
type admission struct {
	max     int64
	open    atomic.Int64
	timeout time.Duration
	m       *metrics
	log     *ratelog.Logger
}

func (a *admission) acquire() bool {
	if a.open.Add(1) > a.max {
		a.open.Add(-1)
		return false
	}
	a.m.conns.Inc()
	return true
}

func (a *admission) release() {
	a.open.Add(-1)
	a.m.conns.Dec()
}

// refused counts and logs (rate-limited) a connection refused for reason.
func (a *admission) refused(reason, listener, remote string, args ...any) {
	a.m.refused.WithLabelValues(reason).Inc()
	a.log.Log(slog.LevelInfo, "refused:"+reason, "client refused",
		append([]any{"reason", reason, "listener", listener, "remote", remote}, args...)...)
}

// passwordGate keeps password checks from becoming a CPU outage. A check is
// PBKDF2 with hundreds of thousands of rounds (about 0.1 s of one core, by
// design), so a flood of wrong passwords must not start one per attempt:
//
//   - an address that failed burst times recently is refused without a check
//     until its bucket refills (one attempt per refill);
//   - at most one check runs at a time and at most maxWaiting wait for it;
//     beyond that a login is refused as busy;
//   - a user's last accepted password is remembered as a salted SHA-256 in
//     memory, so a phone that reconnects with the right password costs
//     microseconds, not a PBKDF2 run.
type passwordGate struct {
	auth       *Auth
	m          *metrics
	burst      float64
	refill     time.Duration
	maxWaiting int32
	slot       chan struct{}
	waiting    atomic.Int32
	stopped    chan struct{} // closed with the broker: logins waiting for the slot give up
	stopOnce   sync.Once

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	known   map[string][sha256.Size]byte // user → sha256(salt, password) of the last accepted login
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

const (
	authBurst      = 10
	authRefill     = 2 * time.Second // thirty failed attempts a minute per address, after the burst
	authMaxWaiting = 8
	maxBuckets     = 100_000
)

func newPasswordGate(auth *Auth, m *metrics) *passwordGate {
	return &passwordGate{auth: auth, m: m, burst: authBurst, refill: authRefill, maxWaiting: authMaxWaiting,
		slot: make(chan struct{}, 1), stopped: make(chan struct{}), buckets: map[netip.Addr]*bucket{}, known: map[string][sha256.Size]byte{}, now: time.Now}
}

// stop makes the logins waiting for a password check give up, so stopping
// the broker does not wait for their PBKDF2 runs one after another.
func (g *passwordGate) stop() {
	g.stopOnce.Do(func() { close(g.stopped) })
}

// check reports whether password is user's, or the refusal reason when it
// could not be checked: refuseRateLimited, refuseAuthBusy, refuseCredentials.
func (g *passwordGate) check(ctx context.Context, remote, user string, password []byte) (reason string, ok bool) {
	addr := remoteAddr(remote)
	if g.known != nil {
		if c, found := g.auth.users[user]; found {
			sum := g.digest(c.salt, password)
			g.mu.Lock()
			k, seen := g.known[user]
			g.mu.Unlock()
			if seen && subtle.ConstantTimeCompare(sum[:], k[:]) == 1 {
				return "", true
			}
		}
	}
	if !g.allowed(addr) {
		return refuseRateLimited, false
	}
	if g.waiting.Add(1) > g.maxWaiting {
		g.waiting.Add(-1)
		return refuseAuthBusy, false
	}
	select {
	case g.slot <- struct{}{}:
		g.waiting.Add(-1)
	case <-ctx.Done():
		g.waiting.Add(-1)
		return refuseAuthBusy, false
	case <-g.stopped:
		g.waiting.Add(-1)
		return refuseAuthBusy, false
	}
	ok = g.auth.Authenticate(user, password)
	<-g.slot
	if !ok {
		g.m.authChecks.WithLabelValues("failed").Inc()
		g.failed(addr)
		return refuseCredentials, false
	}
	g.m.authChecks.WithLabelValues("ok").Inc()
	c := g.auth.users[user]
	sum := g.digest(c.salt, password)
	g.mu.Lock()
	g.known[user] = sum
	g.mu.Unlock()
	return "", true
}

func (g *passwordGate) digest(salt, password []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(password)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// allowed reports whether addr has a failure left in its bucket.
func (g *passwordGate) allowed(addr netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.buckets[addr]
	if b == nil {
		return true
	}
	g.refillLocked(b)
	return b.tokens >= 1
}

// failed takes one token from addr's bucket.
func (g *passwordGate) failed(addr netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.buckets[addr]
	if b == nil {
		full := func(old *bucket) bool { // an address whose bucket is full again is forgotten
			g.refillLocked(old)
			return old.tokens >= g.burst
		}
		if !bounded.MakeRoom(g.buckets, maxBuckets, full) {
			return // the check slot still bounds the cost
		}
		b = &bucket{tokens: g.burst, at: g.now()}
		g.buckets[addr] = b
	}
	g.refillLocked(b)
	b.tokens = max(b.tokens-1, 0)
}

func (g *passwordGate) refillLocked(b *bucket) {
	now := g.now()
	b.tokens = min(g.burst, b.tokens+float64(now.Sub(b.at))/float64(g.refill))
	b.at = now
}

// remoteAddr is the IP of a "host:port" remote address, the zero Addr when it
// has none (every such client then shares one bucket).
func remoteAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// isLoopbackRemote reports whether a client's remote address is on this host.
func isLoopbackRemote(remote string) bool {
	return remoteAddr(remote).IsLoopback()
}
