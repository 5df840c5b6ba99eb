package app

import (
	"fmt"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/store"
)

// buildSource puts together where the focus path gets its data: the central
// (the in-process catalog, or a remote one at CENTRAL_URL) behind a cache
// (Redis at REDIS_URL, or a bounded in-process one).
func (a *App) buildSource() error {
	sc := a.cfg.Store
	var central store.Source = a.catalog
	if sc.CentralURL != "" {
		c, err := store.NewCentralClient(sc.CentralURL, sc.CentralTimeout, sc.CentralLimits())
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.centralClient = c
		central = c
		a.log.Info("context from a remote central", "url", redactURL(sc.CentralURL), "timeout", sc.CentralTimeout)
	}
	cc := store.CacheConfig{TTL: sc.CacheTTL, Prefix: sc.CachePrefix, MaxItems: sc.CacheMaxItems}
	if sc.RedisURL != "" {
		c, err := store.NewRedisCache(central, sc.RedisURL, sc.RedisPassword, cc, a.log)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.cache = c
		a.log.Info("cache in Redis", "url", redactURL(sc.RedisURL), "ttl", sc.CacheTTL, "prefix", sc.CachePrefix)
	} else {
		a.cache = store.NewMemoryCache(central, cc)
	}
	a.registerSourceMetrics()
	return nil
}

// redactURL drops the user info (a password) from a URL for the log.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	if u.User != nil {
		u.User = url.User("*****")
	}
	return u.String()
}

// closeSource releases the central client and the cache.
func (a *App) closeSource() {
	if a.cache != nil {
		_ = a.cache.Close()
	}
	if a.centralClient != nil {
		a.centralClient.Close()
	}
}

// registerSourceMetrics exposes the cache's, the central client's and the
// central server's own counters on /metrics, read when scraped.
func (a *App) registerSourceMetrics() {
	c := a.cache
	a.countersByLabel("storeflow_cache_hits_total", "Focus-path reads answered from the cache, by kind.", "kind", map[string]func() uint64{
		"customer": func() uint64 { return c.Stats().Hits.Customer },
		"coupons":  func() uint64 { return c.Stats().Hits.Coupons },
		"products": func() uint64 { return c.Stats().Hits.Products },
	})
	a.countersByLabel("storeflow_cache_misses_total", "Focus-path reads the cache did not hold (asked the central), by kind.", "kind", map[string]func() uint64{
		"customer": func() uint64 { return c.Stats().Misses.Customer },
		"coupons":  func() uint64 { return c.Stats().Misses.Coupons },
		"products": func() uint64 { return c.Stats().Misses.Products },
	})
	a.countersByLabel("storeflow_cache_errors_total", "Cache trouble: Redis unreachable or failing, corrupt values in Redis.", "kind", map[string]func() uint64{
		"redis":   func() uint64 { return c.Stats().RedisErrors },
		"corrupt": func() uint64 { return c.Stats().Corrupt },
	})
	a.countersByLabel("storeflow_central_answers_total", "Answers of the central behind the cache to cache misses, by outcome.", "outcome", map[string]func() uint64{
		"not_found":   func() uint64 { return c.Stats().SourceNotFound },
		"unavailable": func() uint64 { return c.Stats().SourceUnavailable },
	})
	srv := a.central
	for route, get := range map[string]func(store.CentralServerStats) store.CentralRouteStats{
		"customers": func(s store.CentralServerStats) store.CentralRouteStats { return s.Customers },
		"coupons":   func(s store.CentralServerStats) store.CentralRouteStats { return s.Coupons },
		"products":  func(s store.CentralServerStats) store.CentralRouteStats { return s.Products },
	} {
		a.reg.MustRegister(counterVecFunc("storeflow_central_server_requests_total",
			"Requests to this process's central API, by route and outcome.", prometheus.Labels{"route": route}, "outcome",
			map[string]func() uint64{
				"ok":          func() uint64 { return get(srv.Stats()).OK },
				"not_found":   func() uint64 { return get(srv.Stats()).NotFound },
				"bad_request": func() uint64 { return get(srv.Stats()).BadRequest },
				"unavailable": func() uint64 { return get(srv.Stats()).Unavailable },
			})...)
	}
	if cl := a.centralClient; cl != nil {
		a.countersByLabel("storeflow_central_client_calls_total", "Calls to CENTRAL_URL, by outcome.", "outcome", map[string]func() uint64{
			"ok":           func() uint64 { return cl.Stats().OK },
			"not_found":    func() uint64 { return cl.Stats().NotFound },
			"canceled":     func() uint64 { return cl.Stats().Canceled },
			"timeout":      func() uint64 { return cl.Stats().Timeout },
			"transport":    func() uint64 { return cl.Stats().Transport },
			"http_5xx":     func() uint64 { return cl.Stats().HTTP5xx },
			"bad_response": func() uint64 { return cl.Stats().BadResponse },
			"limited":      func() uint64 { return cl.Stats().Limited },
			"breaker_open": func() uint64 { return cl.Stats().BreakerOpen },
		})
		a.registerBreakerMetrics("central", cl.BreakerState, func() uint64 { return cl.Stats().BreakerOpened })
	}
}

// countersByLabel registers one counter per label value, each read from its
// function when scraped.
func (a *App) countersByLabel(name, help, label string, read map[string]func() uint64) {
	a.reg.MustRegister(counterVecFunc(name, help, nil, label, read)...)
}

func counterVecFunc(name, help string, constant prometheus.Labels, label string, read map[string]func() uint64) []prometheus.Collector {
	var out []prometheus.Collector
	for value, f := range read {
		labels := prometheus.Labels{label: value}
		for k, v := range constant {
			labels[k] = v
		}
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) }))
	}
	return out
}
