// Package breaker is the circuit breaker in front of storeflow's remote
// peers (the prediction service, the central): after a run of failed calls
// it stops calling the peer for a while, so that a peer that hangs costs one
// fast error per call instead of a worker held until the call's timeout,
// then lets one call through to probe whether the peer is back.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrOpen is the error of a call the breaker refused.
var ErrOpen = errors.New("circuit breaker open")

// State is where a Breaker stands.
type State int32

const (
	Closed   State = iota // calls go through
	Open                  // calls are refused until the cooldown has passed
	HalfOpen              // one call, the probe, goes through; the others are refused
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Result is what a call says about the peer.
type Result uint8

const (
	Success Result = iota // the peer answered
	Failure               // it did not: a timeout, no connection, a 5xx
	Neutral               // nothing learned: the caller gave up
)

// ResultOf classifies a finished HTTP call: status is the answer's status
// code (0: no answer), err the call's error, which wraps context.Canceled
// when the caller gave up. An answer below 500 is a Success even when the
// caller cannot use it: the peer is up and answers, so there is nothing to
// protect it or the caller from.
func ResultOf(status int, err error) Result {
	switch {
	case err == nil, status > 0 && status < http.StatusInternalServerError:
		return Success
	case errors.Is(err, context.Canceled):
		return Neutral
	}
	return Failure
}

// Breaker opens after Failures consecutive failed calls, stays open for
// Cooldown, then lets one probe through: its success closes the breaker,
// its failure opens it for another Cooldown. It is safe for concurrent use.
type Breaker struct {
	failures int
	cooldown time.Duration
	now      func() time.Time

	mu          sync.Mutex
	state       State
	consecutive int       // failures in a row while closed
	until       time.Time // while open: when a probe may go
	probing     bool      // while half-open: the probe is out
	last        string    // the failure that opened it, for Err

	opened, refused atomic.Uint64
	stateNow        atomic.Int32 // state, readable without the lock
}

// New returns a closed breaker that opens after failures failed calls in a
// row, for cooldown. With failures 0 it never opens.
func New(failures int, cooldown time.Duration) *Breaker {
	return &Breaker{failures: failures, cooldown: cooldown, now: time.Now}
}

// Allow says whether a call may go to the peer now. nil: go, and report the
// outcome with Record, passing probe on. Otherwise the error wraps ErrOpen.
func (b *Breaker) Allow() (probe bool, err error) {
	if b.failures <= 0 {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return false, nil
	case Open:
		if b.now().Before(b.until) {
			return false, b.refuse()
		}
		b.set(HalfOpen)
	}
	if b.probing {
		return false, b.refuse()
	}
	b.probing = true
	return true, nil
}

// Record reports the outcome of a call Allow let through; err describes a
// Failure. While the breaker is open or probing, only the probe's outcome
// counts: the calls that were out when it opened say nothing newer.
func (b *Breaker) Record(probe bool, r Result, err error) {
	if b.failures <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case probe && b.state == HalfOpen:
		b.probing = false
		switch r {
		case Success:
			b.consecutive = 0
			b.set(Closed)
		case Failure:
			b.open(err)
		}
	case b.state == Closed:
		switch r {
		case Success:
			b.consecutive = 0
		case Failure:
			if b.consecutive++; b.consecutive >= b.failures {
				b.open(err)
			}
		}
	}
}

// State is where the breaker stands now.
func (b *Breaker) State() State { return State(b.stateNow.Load()) }

// Err is nil while the breaker is closed, else why it is not, for a
// readiness probe.
func (b *Breaker) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == Closed {
		return nil
	}
	return b.errLocked()
}

// Opened is how many times the breaker opened.
func (b *Breaker) Opened() uint64 { return b.opened.Load() }

// Refused is how many calls the breaker refused.
func (b *Breaker) Refused() uint64 { return b.refused.Load() }

func (b *Breaker) refuse() error {
	b.refused.Add(1)
	return b.errLocked()
}

func (b *Breaker) errLocked() error {
	if b.state == HalfOpen {
		return fmt.Errorf("%w: probing after %d failures in a row (%s)", ErrOpen, b.failures, b.last)
	}
	return fmt.Errorf("%w for %s after %d failures in a row (%s)", ErrOpen, b.cooldown, b.failures, b.last)
}

func (b *Breaker) open(err error) {
	b.last = "no error given"
	if err != nil {
		b.last = err.Error()
	}
	b.consecutive = 0
	b.until = b.now().Add(b.cooldown)
	b.opened.Add(1)
	b.set(Open)
}

func (b *Breaker) set(s State) {
	b.state = s
	b.stateNow.Store(int32(s))
}

// Register exposes the breaker on reg as peer's: storeflow_breaker_state
// (0 closed, 1 open, 2 half-open) and storeflow_breaker_opened_total; nil
// reg: nowhere.
func (b *Breaker) Register(reg prometheus.Registerer, peer string) {
	if reg == nil {
		return
	}
	labels := prometheus.Labels{"peer": peer}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "storeflow_breaker_state", ConstLabels: labels,
			Help: "A remote peer's circuit breaker: 0 closed (calls go through), 1 open (calls refused), 2 half-open (one probe out)."},
			func() float64 { return float64(b.State()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "storeflow_breaker_opened_total", ConstLabels: labels,
			Help: "Times a remote peer's circuit breaker opened."}, func() float64 { return float64(b.Opened()) }))
}
