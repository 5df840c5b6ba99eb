package app

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/cache"
	"github.com/storeflow/storeflow/store/central"
)

// buildSource puts together where the focus path gets its data: the central
// (the in-process catalog, or a remote one at CENTRAL_URL) behind a cache
// (Redis at REDIS_URL, or a bounded in-process one).
func (a *App) buildSource() error {
	sc := a.cfg.Store
	var src store.Source = a.catalog
	if sc.CentralURL != "" {
		c, err := central.NewClient(sc.CentralURL, sc.CentralTimeout, a.reg)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.centralClient = c
		src = c
		a.log.Info("context from a remote central", "url", redact.URL(sc.CentralURL), "timeout", sc.CentralTimeout)
	}
	cc := cache.Config{TTL: sc.CacheTTL, Prefix: sc.CachePrefix, MaxItems: sc.CacheMaxItems}
	if sc.RedisURL != "" {
		c, err := cache.NewRedis(src, sc.RedisURL, sc.RedisPassword, cc, a.log)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.cache = c
		a.log.Info("cache in Redis", "url", redact.URL(sc.RedisURL), "ttl", sc.CacheTTL, "prefix", sc.CachePrefix)
	} else {
		a.cache = cache.NewMemory(src, cc)
	}
	a.registerSourceMetrics()
	return nil
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

// registerSourceMetrics exposes the cache's own counters on /metrics, read
// when scraped.
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
}

// countersByLabel registers one counter per label value, each read from its
// function when scraped.
func (a *App) countersByLabel(name, help, label string, read map[string]func() uint64) {
	for value, f := range read {
		a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help,
			ConstLabels: prometheus.Labels{label: value}}, func() float64 { return float64(f()) }))
	}
}
