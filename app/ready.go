package app

import (
	"context"
	"time"
)

// readyCheckTimeout bounds each dependency check of /readyz: a probe must
// answer quickly, and a dependency slower than this is not ready.
const readyCheckTimeout = 500 * time.Millisecond

// notReady says why the process should not take traffic ("" when it
// should): the broker not serving or the pipeline not subscribed, Redis
// (REDIS_URL) not answering, the prediction service (PREDICTION_URL) not
// ready. The dependency checks run in parallel, each within
// readyCheckTimeout.
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
	if a.cfg.Store.RedisURL != "" {
		checks = append(checks, check{"redis", a.cache.Ping})
	}
	if a.client != nil {
		checks = append(checks, check{"prediction", a.client.Ready})
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
