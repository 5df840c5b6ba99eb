// Package harness holds the two things every test package that runs a part
// of storeflow needs: starting a long-running part (something with
// Run(ctx) and a ready signal) and stopping it when the test ends, and
// waiting for a condition with a deadline instead of sleeping.
package harness

import (
	"context"
	"testing"
	"time"
)

// Start runs run on its own goroutine and returns once ready is closed. The
// test fails if run returns first, or if ready is not closed within 10 s.
// stop cancels run's context and fails the test unless run returns nil
// within the given time; Start calls it at the end of the test too (a second
// call does nothing).
func Start(t testing.TB, what string, run func(context.Context) error, ready <-chan struct{}) (stop func(within time.Duration)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("%s stopped before it was ready: %v", what, err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("%s not ready within 10s", what)
	}
	stopped := false
	stop = func(within time.Duration) {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run: %v", what, err)
			}
		case <-time.After(within):
			t.Errorf("%s: Run did not return within %v of cancel", what, within)
		}
	}
	t.Cleanup(func() { stop(10 * time.Second) })
	return stop
}

// Until polls cond until it holds, and fails the test with what when it
// still does not after within.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // a poll interval, not a settle
	}
}

// Done waits for the one result of something that ends (a process, a Run, a
// subscription) and fails the test if it is an error, or, with what, when it
// has not come after within.
func Done(t testing.TB, within time.Duration, what string, result <-chan error) {
	t.Helper()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(within):
		t.Fatalf("not within %s: %s", within, what)
	}
}
