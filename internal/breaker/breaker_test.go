package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time for a Breaker.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestBreaker() (*Breaker, *clock) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	b := New(3, time.Second)
	b.now = c.now
	return b, c
}

// call runs one call through b with result r, as a client does, and says
// whether it went through.
func call(b *Breaker, r Result) bool {
	probe, err := b.Allow()
	if err != nil {
		return false
	}
	b.Record(probe, r, errors.New("peer failed"))
	return true
}

func TestBreaker(t *testing.T) {
	type step struct {
		advance time.Duration
		r       Result
		through bool  // the call is let through
		want    State // after it
	}
	tests := map[string][]step{
		"failures in a row open it; then calls are refused": {
			{0, Failure, true, Closed}, {0, Failure, true, Closed}, {0, Failure, true, Open},
			{0, Success, false, Open}, {999 * time.Millisecond, Success, false, Open},
		},
		"a success in between starts the count again": {
			{0, Failure, true, Closed}, {0, Failure, true, Closed}, {0, Success, true, Closed},
			{0, Failure, true, Closed}, {0, Failure, true, Closed}, {0, Failure, true, Open},
		},
		"after the cooldown a successful probe closes it": {
			{0, Failure, true, Closed}, {0, Failure, true, Closed}, {0, Failure, true, Open},
			{time.Second, Success, true, Closed}, {0, Failure, true, Closed},
		},
		"a failed probe opens it for another cooldown": {
			{0, Failure, true, Closed}, {0, Failure, true, Closed}, {0, Failure, true, Open},
			{time.Second, Failure, true, Open}, {500 * time.Millisecond, Success, false, Open},
			{500 * time.Millisecond, Success, true, Closed},
		},
		"a probe the caller gave up on lets the next call probe": {
			{0, Failure, true, Closed}, {0, Failure, true, Closed}, {0, Failure, true, Open},
			{time.Second, Neutral, true, HalfOpen}, {0, Success, true, Closed},
		},
		"neutral results do not count": {
			{0, Failure, true, Closed}, {0, Neutral, true, Closed}, {0, Failure, true, Closed}, {0, Failure, true, Open},
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			b, c := newTestBreaker()
			for i, s := range steps {
				c.t = c.t.Add(s.advance)
				if got := call(b, s.r); got != s.through {
					t.Fatalf("step %d: let through %t, want %t", i, got, s.through)
				}
				if got := b.State(); got != s.want {
					t.Fatalf("step %d: state %s, want %s", i, got, s.want)
				}
			}
		})
	}
}

// While the probe is out every other call is refused, and calls that were
// out when the breaker opened do not decide anything.
func TestBreakerOneProbe(t *testing.T) {
	b, c := newTestBreaker()
	late, err := b.Allow() // a call that is out while the breaker opens
	if err != nil || late {
		t.Fatalf("Allow = %t, %v on a closed breaker", late, err)
	}
	for range 3 {
		call(b, Failure)
	}
	b.Record(late, Success, nil)
	if b.State() != Open {
		t.Fatalf("a call from before the opening closed the breaker: %s", b.State())
	}
	c.t = c.t.Add(time.Second)
	probe, err := b.Allow()
	if err != nil || !probe {
		t.Fatalf("Allow after the cooldown = %t, %v, want the probe", probe, err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), "probing") {
		t.Fatalf("a second call while probing: %v, want ErrOpen (probing)", err)
	}
	if err := b.Err(); err == nil || !strings.Contains(err.Error(), "peer failed") {
		t.Fatalf("Err() = %v, want the failure that opened it", err)
	}
	b.Record(probe, Success, nil)
	if b.State() != Closed || b.Err() != nil {
		t.Fatalf("after a good probe: %s, %v", b.State(), b.Err())
	}
	if b.Opened() != 1 || b.Refused() != 1 {
		t.Fatalf("opened %d, refused %d; want 1 and 1", b.Opened(), b.Refused())
	}
}

func TestResultOf(t *testing.T) {
	tests := []struct {
		status int
		err    error
		want   Result
	}{
		{200, nil, Success},
		{404, errors.New("not found"), Success},
		{400, errors.New("bad request"), Success},
		{503, errors.New("unavailable"), Failure},
		{0, errors.New("connection refused"), Failure},
		{0, fmt.Errorf("timed out: %w", context.DeadlineExceeded), Failure},
		{0, fmt.Errorf("gave up: %w", context.Canceled), Neutral},
	}
	for _, tt := range tests {
		if got := ResultOf(tt.status, tt.err); got != tt.want {
			t.Errorf("ResultOf(%d, %v) = %d, want %d", tt.status, tt.err, got, tt.want)
		}
	}
}

func TestBreakerOff(t *testing.T) {
	b := New(0, time.Second)
	for range 100 {
		if !call(b, Failure) {
			t.Fatal("a breaker with failures 0 refused a call")
		}
	}
	if b.State() != Closed || b.Err() != nil {
		t.Fatalf("state %s, %v", b.State(), b.Err())
	}
}

// Concurrent calls keep the breaker consistent (run with -race).
func TestBreakerConcurrent(t *testing.T) {
	b := New(5, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				r := Failure
				if g == 0 && i%2 == 0 { // one caller's calls succeed now and then
					r = Success
				}
				call(b, r)
				_ = b.Err()
			}
		})
	}
	wg.Wait()
	if b.Opened() == 0 || b.Refused() == 0 {
		t.Fatalf("opened %d times, refused %d calls, under failing calls", b.Opened(), b.Refused())
	}
}
