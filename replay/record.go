package replay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/internal/ratelog"
)

// Subscriber is where Record listens: a broker connection.
type Subscriber interface {
	Subscribe(filter string, h func(topic string, payload []byte)) error
	// Ready is closed once the connection is up and subscribed.
	Ready() <-chan struct{}
}

// RecordQueue is how many received messages wait to be written, at most;
// beyond it they are dropped and counted (a disk that stalls must not stall
// the broker connection).
const RecordQueue = 8192

// Recorded is what Record did.
type Recorded struct {
	Written, Dropped uint64
}

type received struct {
	topic   string
	payload []byte
	at      time.Time
}

// Record subscribes to filters and writes every message received, one Line
// of JSON a line, until ctx is done; then it writes what is still queued and
// returns. ready, when not nil, is closed once the subscriptions are in
// place.
func Record(ctx context.Context, sub Subscriber, filters []string, w io.Writer, log *slog.Logger, ready chan<- struct{}) (Recorded, error) {
	q := make(chan received, RecordQueue)
	var dropped atomic.Uint64
	warn := ratelog.New(log, 10*time.Second)
	for _, f := range filters {
		err := sub.Subscribe(f, func(topic string, payload []byte) {
			m := received{topic, bytes.Clone(payload), time.Now()}
			select {
			case q <- m:
			default:
				dropped.Add(1)
				warn.Log(slog.LevelWarn, "record:dropped", "record queue full: dropping messages", "queue", RecordQueue)
			}
		})
		if err != nil {
			return Recorded{}, fmt.Errorf("record: subscribe %s: %w", f, err)
		}
	}
	select {
	case <-sub.Ready():
	case <-ctx.Done():
		return Recorded{}, ctx.Err()
	}
	if ready != nil {
		close(ready)
	}
	bw := bufio.NewWriter(w)
	var written uint64
	result := func(err error) (Recorded, error) {
		if err != nil {
			err = fmt.Errorf("record: %w", err)
		}
		return Recorded{Written: written, Dropped: dropped.Load()}, err
	}
	var line []byte
	write := func(m received) error {
		line = AppendLine(line[:0], m.topic, m.payload, m.at)
		if _, err := bw.Write(line); err != nil {
			return err
		}
		written++
		return nil
	}
	for {
		select {
		case m := <-q:
			if err := write(m); err != nil {
				return result(err)
			}
			if len(q) == 0 {
				// Flushed whenever the queue is empty: a reader of the
				// output (record | jq) sees each message as it comes.
				if err := bw.Flush(); err != nil {
					return result(err)
				}
			}
		case <-ctx.Done():
			for len(q) > 0 {
				if err := write(<-q); err != nil {
					return result(err)
				}
			}
			return result(bw.Flush())
		}
	}
}

// AppendLine appends one line of a recording (a Line and a newline) to dst.
// A payload that is a JSON object or list is kept as JSON (compacted onto the
// line); any other payload, JSON or not, is kept as a string of its bytes, so
// that replay publishes exactly those bytes.
func AppendLine(dst []byte, topic string, payload []byte, at time.Time) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendJSONString(dst, topic)
	dst = append(dst, `,"payload":`...)
	var c bytes.Buffer
	if k := event.Kind(payload); (k == event.KindObject || k == event.KindList) && json.Compact(&c, payload) == nil {
		dst = append(dst, c.Bytes()...)
	} else {
		dst = appendJSONString(dst, string(payload))
	}
	dst = append(dst, `,"time":"`...)
	dst = at.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, "\"}\n"...)
}
