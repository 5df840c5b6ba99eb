package app

import (
	"cmp"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

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
		c, err := central.NewClient(sc.CentralURL, sc.CentralTimeout, sc.CentralLimits(), a.reg)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.centralClient = c
		src = c
		a.log.Info("context from a remote central", "url", redact.URL(sc.CentralURL), "timeout", sc.CentralTimeout)
	}
	cc := cache.Config{TTL: sc.CacheTTL, Prefix: sc.CachePrefix, MaxItems: sc.CacheMaxItems}
	if sc.RedisURL != "" {
		c, err := cache.NewRedis(src, sc.RedisURL, sc.RedisPassword, cc, a.log, a.reg)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.cache = c
		a.log.Info("cache in Redis", "url", redact.URL(sc.RedisURL), "ttl", sc.CacheTTL, "prefix", sc.CachePrefix)
	} else {
		a.cache = cache.NewMemory(src, cc, a.reg)
	}
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
	if a.dwellRedis != nil {
		_ = a.dwellRedis.Close()
	}
}

// dwellRedis is the client of the shared dwell state (DWELL_STATE=redis) at
// REDIS_URL. It connects on first use: Redis being down is no start error,
// the dwell workers count what it fails.
func dwellRedis(sc store.Config) (redis.UniversalClient, error) {
	opts, err := redis.ParseURL(sc.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL=%s: %w", redact.URL(sc.RedisURL), redact.Error(err, sc.RedisURL))
	}
	opts.Password = cmp.Or(opts.Password, sc.RedisPassword)
	opts.MaxRetries = -1 // a failed batch is counted, not retried
	opts.ContextTimeoutEnabled = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(opts), nil
}
