package pipeline

import (
	"sync"
	"time"
)

// dropShutdown is the dropped-events label of what shutdown refused at intake
// or abandoned at SHUTDOWN_TIMEOUT.
const dropShutdown = "shutdown"

// gate lets callbacks into a queue until it is closed. Once close returns, no
// callback is sending to the queue and none ever will, so the queue may be
// closed and its readers drained.
type gate struct {
	mu     sync.RWMutex
	shut   bool
	closed chan struct{} // closed first, to wake callbacks blocked on a full queue
}

func newGate() *gate { return &gate{closed: make(chan struct{})} }

// enter reports whether the gate is open; if so the caller must leave.
func (g *gate) enter() bool {
	g.mu.RLock()
	if g.shut {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *gate) leave() { g.mu.RUnlock() }

// close shuts the gate and waits for the callbacks inside to leave. It is
// called once, by Run.
func (g *gate) close() {
	close(g.closed)
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}

// waitOr waits for done or for the timer, whichever is first, and reports
// whether done came.
func waitOr(done <-chan struct{}, timeout <-chan time.Time) bool {
	select {
	case <-done:
		return true
	case <-timeout:
		return false
	}
}

// waitDone returns a channel closed once every wg is done. When a worker
// never returns, the goroutine behind the channel stays with it.
func waitDone(wgs ...*sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, wg := range wgs {
			wg.Wait()
		}
	}()
	return done
}

// drainCount empties q without blocking and returns how many it held.
func drainCount[T any](q <-chan T) int {
	n := 0
	for {
		select {
		case _, ok := <-q:
			if !ok {
				return n
			}
			n++
		default:
			return n
		}
	}
}
