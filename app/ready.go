package app

import (
	"context"
	"time"

	"github.com/storeflow/storeflow/internal/redisclient"
)

// readyCheckTimeout bounds each dependency check of /readyz: a probe must
// answer quickly, and a dependency slower than this is not ready.
const readyCheckTimeout = 500 * time.Millisecond

// modelCheckEvery is how often the remote model's readiness (V2
// PREDICTION_MODEL) is asked in the background: a model loaded or unloaded
// shows in /readyz within this.
const modelCheckEvery = 2 * time.Second

// notReady says why the process should not take traffic ("" when it
// should): the broker not serving or the pipeline not subscribed, the
// external broker (MQTT_HOST) disconnected, Redis
// (REDIS_URL; every primary of a cluster) not answering, the prediction service (PREDICTION_URL) not
// ready, its circuit breaker open, or its model (PREDICTION_MODEL, V2) not
// ready when last asked (protocol.Client.WatchModel). The dependency checks
// run in parallel, each within readyCheckTimeout.
func (a *App) notReady(ctx context.Context) string {
	select {
	case <-a.ready:
	default:
		return "broker or pipeline subscriptions not up yet"
	}
	type check struct {
		name string
		run  func(context.Context) error
	}
	var checks []check
	if c, ok := a.conn.(interface{ Connected() error }); ok {
		checks = append(checks, check{"broker", func(context.Context) error { return c.Connected() }})
	}
	if c := a.redis; c != nil {
		checks = append(checks, check{"redis", func(ctx context.Context) error { return redisclient.Ping(ctx, c) }})
	}
	if c := a.client; c != nil {
		checks = append(checks, check{"prediction", func(ctx context.Context) error {
			if err := c.BreakerErr(); err != nil {
				return err // a service that answers its health route may still hang on scoring
			}
			if err := c.Ready(ctx); err != nil {
				return err
			}
			return c.ModelErr()
		}})
	}
	errs := make([]error, len(checks))
	done := make(chan struct{}, len(checks))
	for i, c := range checks {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
			defer cancel()
			errs[i] = c.run(cctx)
			done <- struct{}{}
		}()
	}
	for range checks {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			return checks[i].name + ": " + err.Error()
		}
	}
	return ""
}

// degraded says what a ready process does only in part ("" when nothing):
// with the central's (CENTRAL_URL) circuit breaker open, cached contexts are
// served and the rest fail fast. A central that is down leaves the process
// ready, as it always has: the cache keeps serving.
func (a *App) degraded() string {
	if c := a.centralClient; c != nil {
		if err := c.BreakerErr(); err != nil {
			return "central: " + err.Error()
		}
	}
	return ""
}
