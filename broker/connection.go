package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// publishSuffix names storeflow's second connection to an external broker:
// MQTT_NAME-pub.
const publishSuffix = "-pub"

// Connection is storeflow's link to an external broker: two MQTT
// connections. One (MQTT_NAME) carries the subscriptions: the shopper events
// in, the focus events to the focus workers. The other (MQTT_NAME-pub)
// carries what storeflow publishes: focus events, coupons, browsing alerts.
//
// One connection would deadlock under load: paho hands the subscriptions'
// messages to their handlers one after another on the goroutine that also
// reads the broker's acknowledgements, and a handler waits while the
// pipeline's intake queue is full (PIPELINE_OVERFLOW=block); the dwell
// workers that would empty that queue wait for the acknowledgement of the
// focus event they publish (QoS 1), which that goroutine never reads. On a
// connection of their own the publishes are acknowledged whatever the
// intake does.
type Connection struct {
	in, out *Client
	ready   chan struct{}
}

// Connect dials both connections; their metrics carry connection="intake"
// or connection="publish".
func Connect(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Connection, error) {
	in, err := Dial(ctx, cfg, log.With("connection", "intake"), prometheus.WrapRegistererWith(prometheus.Labels{"connection": "intake"}, reg))
	if err != nil {
		return nil, err
	}
	out, err := dialAs(ctx, cfg, cfg.Name+publishSuffix, log.With("connection", "publish"), prometheus.WrapRegistererWith(prometheus.Labels{"connection": "publish"}, reg))
	if err != nil {
		_ = in.Close()
		return nil, err
	}
	c := &Connection{in: in, out: out, ready: make(chan struct{})}
	go func() {
		for _, ch := range []<-chan struct{}{in.Ready(), out.Ready()} {
			select {
			case <-ch:
			case <-in.done:
				return
			case <-out.done:
				return
			}
		}
		close(c.ready)
	}()
	return c, nil
}

// Publish sends on the publishing connection (see Client.Publish).
func (c *Connection) Publish(ctx context.Context, topic string, payload []byte) error {
	return c.out.Publish(ctx, topic, payload)
}

// Subscribe subscribes on the intake connection (see Client.Subscribe).
func (c *Connection) Subscribe(filter string, h Handler) error { return c.in.Subscribe(filter, h) }

// SubscribeAck subscribes on the intake connection (see Client.SubscribeAck).
func (c *Connection) SubscribeAck(filter string, h AckHandler) error {
	return c.in.SubscribeAck(filter, h)
}

// Ready is closed once both connections are up (and subscribed).
func (c *Connection) Ready() <-chan struct{} { return c.ready }

// Connected is nil while both connections are up, else the first one's
// error that is not.
func (c *Connection) Connected() error {
	if err := c.in.Connected(); err != nil {
		return err
	}
	if err := c.out.Connected(); err != nil {
		return fmt.Errorf("%w (the publishing connection, MQTT_NAME%s)", err, publishSuffix)
	}
	return nil
}

// Addr is empty: an external broker's address is in MQTT_HOST.
func (c *Connection) Addr() string { return "" }

// Run keeps both connections until ctx is done, then disconnects them:
// the intake first, so nothing more comes in while the last publishes
// go out.
func (c *Connection) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.in.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		<-c.in.done
		c.out.shutdown(250) // as Client.Run does
		return nil
	})
	return g.Wait()
}

// Close disconnects both at once; for a connection that never ran.
func (c *Connection) Close() error {
	return errors.Join(c.in.Close(), c.out.Close())
}
