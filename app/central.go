package app

import (
	"fmt"

	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/internal/redisclient"
	"github.com/storeflow/storeflow/store"
	"github.com/storeflow/storeflow/store/cache"
	"github.com/storeflow/storeflow/store/central"
)

// buildSource puts together where the focus path gets its data: the central
// (the in-process catalog, or a remote one at CENTRAL_URL) behind a cache
// (Redis at REDIS_URL, or a bounded in-process one). It opens the process's
// one Redis client (a server, or a Redis Cluster with REDIS_CLUSTER=true),
// which the pipeline gets too.
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
		c, err := redisclient.Open(redisclient.Config{URL: sc.RedisURL, Password: sc.RedisPassword, Cluster: sc.RedisCluster}, a.log)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		a.redis = c
		a.cache = cache.NewRedis(src, c, cc, a.log, a.reg)
		a.log.Info("cache in Redis", "url", redact.URL(sc.RedisURL), "cluster", sc.RedisCluster, "ttl", sc.CacheTTL, "prefix", sc.CachePrefix)
	} else {
		a.cache = cache.NewMemory(src, cc, a.reg)
	}
	return nil
}

// closeSource releases the central client, the cache and the Redis client.
func (a *App) closeSource() {
	if a.cache != nil {
		_ = a.cache.Close()
	}
	if a.redis != nil {
		_ = a.redis.Close()
	}
	if a.centralClient != nil {
		a.centralClient.Close()
	}
}
