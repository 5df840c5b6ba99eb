package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// startWith runs a pipeline with scorer on b until the test ends; tweak may
// adjust it before it runs.
func startWith(t *testing.T, cfg Config, scorer heldScorer, b *bus, tweak func(*Pipeline)) *Pipeline {
	t.Helper()
	p := runUntilEnd(t, newTestPipeline(t, cfg, Parts{Source: testCatalog(t), Scorer: scorer, Sub: b, Pub: b}), tweak)
	// Registered after the run's own cleanup, so it runs first: what is held
	// finishes, and Run can return.
	t.Cleanup(func() {
		select {
		case <-scorer.release:
		default:
			close(scorer.release)
		}
	})
	return p
}

// lingerInMen publishes the moves of a shopper who stays in Men past the
// dwell: the last one completes a focus.
func lingerInMen(b *bus, id string, ts int64) {
	for i := range 11 {
		_ = b.Publish(context.Background(), "move", fmt.Appendf(nil, `{"id":%q,"ts":%d,"x":0,"y":7}`, id, ts+int64(i)))
	}
}

// A scorer that never answers fills the focus stages and their queue; the
// focus events after that are dropped and counted, and the dwell workers go
// on: the moves of shoppers who never focus are all handled while the
// scorer is still held. Before, the dwell workers waited for room in the
// focus queue, and every move behind them waited too.
func TestStuckFocusStagesDoNotHoldTheDwellWorkers(t *testing.T) {
	cfg := testConfig()
	cfg.FocusWorkers, cfg.QueueSize = 1, 4
	b := newBus()
	scorer := heldScorer{entered: make(chan struct{}, 100), release: make(chan struct{})}
	p := startWith(t, cfg, scorer, b, nil)
	ts := time.Now().Unix()
	const lingerers, walkers = 20, 300
	published := make(chan struct{})
	go func() { // the publisher may be held: the test watches from here
		defer close(published)
		for i := range lingerers { // far more focus events than the stages and their queue hold
			lingerInMen(b, fmt.Sprint(i+1), ts)
		}
		for i := range walkers { // shoppers in the aisle: no focus
			_ = b.Publish(context.Background(), "move", fmt.Appendf(nil, `{"id":"walker-%d","ts":%d,"x":2,"y":5}`, i, ts))
		}
	}()
	waitFor(t, "every shopper's moves handled while the scorer is held", func() bool {
		return testutil.ToFloat64(p.m.tracked) == lingerers+walkers
	})
	<-published
	select {
	case <-scorer.release:
		t.Fatal("released already")
	default:
	}
	if got := testutil.ToFloat64(p.m.focus); got != lingerers {
		t.Errorf("%v focus events detected, want %d", got, lingerers)
	}
	dropped := testutil.ToFloat64(p.m.dropped.WithLabelValues(queueFocus))
	if dropped == 0 || dropped > lingerers-float64(cfg.QueueSize) {
		t.Errorf("%v focus events dropped, want those the stages and the queue could not hold", dropped)
	}

	// Once the scorer answers, the held events finish and the next
	// shopper's focus is taken and gets its coupon.
	close(scorer.release)
	waitFor(t, "the held focus events settle", func() bool { return p.pending.Load() == 0 })
	lingerInMen(b, "21", ts)
	waitFor(t, "the next shopper's coupon", func() bool {
		for {
			select {
			case m := <-b.out:
				if strings.HasPrefix(m, `prediction {"customer":{"id":"21"}`) {
					return true
				}
			default:
				return false
			}
		}
	})
}

// A stage that is busy but takes events paces the hand-off
// (PIPELINE_OVERFLOW=block) instead of shedding: with a queue of one and a
// stream of focus events, every event is taken.
func TestBusyFocusStagesPaceTheHandOff(t *testing.T) {
	cfg := testConfig()
	cfg.FocusWorkers, cfg.QueueSize = 1, 1
	b := newBus()
	scorer := heldScorer{entered: make(chan struct{}, 1000), release: make(chan struct{})}
	close(scorer.release) // answers at once
	// A wait no scheduler hiccup reaches, so that only a stuck stage would
	// make the hand-off give up.
	p := startWith(t, cfg, scorer, b, func(p *Pipeline) { p.focusWait = time.Minute })
	const n = 200
	publishFocus(b, n)
	if got := testutil.ToFloat64(p.m.accepted.WithLabelValues(kindFocus)); got != n {
		t.Errorf("%v of %d focus events taken", got, n)
	}
	if got := testutil.ToFloat64(p.m.dropped.WithLabelValues(queueFocus)); got != 0 {
		t.Errorf("%v focus events dropped by a stage that was only busy", got)
	}
}
