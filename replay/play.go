package replay

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Publisher is where Play sends the steps: a broker connection.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Play publishes the steps of every file together, each file from the
// start, as the original player did: step i of every scenario at the same
// moment, speed times faster than the file's own clock (a scenario's one
// step a second, a recording's gaps as recorded). Event time follows the
// file's own clock from now: a scenario's step i gets ts now+i, a
// recording's ts keep their distances from its first one, which becomes now.
// So at speed 1 the ts are the publish times, and at any speed storeflow's
// event-time rules (FOCUS_DWELL, FOCUS_GAP) see the visit as it happened.
// It stops at the first publish that fails, naming the step, and returns the
// number of steps published.
func Play(ctx context.Context, pub Publisher, files []*File, speed float64) (int, error) {
	if speed <= 0 {
		return 0, fmt.Errorf("replay: speed %v: want more than 0", speed)
	}
	var steps []Step
	for _, f := range files {
		steps = append(steps, f.Steps...)
	}
	// Stable: steps at the same moment go in file order, a file's own in order.
	slices.SortStableFunc(steps, func(a, b Step) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	start := time.Now()
	base := start.Unix()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for n, s := range steps {
		if wait := time.Until(start.Add(time.Duration(float64(s.At) / speed))); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return n, ctx.Err()
			}
		}
		if err := pub.Publish(ctx, s.Topic, s.Payload(base)); err != nil {
			return n, fmt.Errorf("replay: %s: %s: publish on %s: %w", s.File, s.Where, s.Topic, err)
		}
	}
	return len(steps), nil
}
