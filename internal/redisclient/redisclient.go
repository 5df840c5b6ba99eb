// Package redisclient builds the one Redis client a storeflow process
// shares between its Redis users (the cache; the dwell state and the coupon
// claims of several instances): a single server or a Redis Cluster, from
// REDIS_URL, REDIS_PASSWORD and REDIS_CLUSTER. It owns the policy they share
// — short timeouts and no retries, errors that name the setting and never
// show a password, go-redis's own log lines rate-limited into storeflow's
// log — and the readiness check that asks every primary of a cluster.
package redisclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/storeflow/storeflow/internal/ratelog"
	"github.com/storeflow/storeflow/internal/redact"
)

// Config says where Redis is.
type Config struct {
	URL      string // REDIS_URL: redis:// or rediss:// (TLS); for a cluster, further nodes as addr= query values
	Password string // REDIS_PASSWORD: used when URL carries none
	Cluster  bool   // REDIS_CLUSTER: URL names (some of) the nodes of a Redis Cluster
}

// The client's timeouts are short on purpose: Redis sits on the focus
// path, and a dead Redis must cost a fast failure (the cache then asks its
// source), not a stall. go-redis redials by itself (its pool probes a dead
// server once a second), so nothing retries.
const (
	dialTimeout = 200 * time.Millisecond
	ioTimeout   = 200 * time.Millisecond
	poolTimeout = 500 * time.Millisecond
	startPing   = time.Second
)

// warnEvery is how often go-redis's own log lines (one per failed dial) are
// let through at most.
const warnEvery = 10 * time.Second

// want is the form of REDIS_URL, quoted by every error about it.
const want = "want redis://[user:password@]host:port/db or rediss://…, " +
	`with any "/", "?", "#" or "@" in the password percent-encoded; ` +
	"with REDIS_CLUSTER=true, redis://[user:password@]host:port?addr=host2:port&addr=host3:port"

// New builds the client cfg describes without talking to Redis: a
// *redis.ClusterClient when cfg.Cluster, else a *redis.Client. A malformed
// URL is an error that names REDIS_URL and never shows the password.
// Timeouts, retries and the pool size given in the URL's query are kept; the
// ones not given take the short defaults above.
func New(cfg Config) (redis.UniversalClient, error) {
	u, err := check(cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.Cluster {
		if u.Query().Has("addr") {
			return nil, errors.New("REDIS_URL names more than one node (addr=…): set REDIS_CLUSTER=true for a Redis Cluster")
		}
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL=%s: %w", redact.URL(cfg.URL), redact.Error(err, cfg.URL))
		}
		policy{&opts.Password, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout,
			&opts.MaxRetries, &opts.PoolSize, &opts.DialerRetries, &opts.ContextTimeoutEnabled, &opts.MaintNotificationsConfig}.apply(cfg.Password)
		return redis.NewClient(opts), nil
	}
	// A cluster has database 0 only.
	if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		return nil, fmt.Errorf("REDIS_URL=%s: a Redis Cluster has database 0 only (REDIS_CLUSTER=true)", redact.URL(cfg.URL))
	}
	u.Path = ""
	opts, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL=%s: %w", redact.URL(cfg.URL), redact.Error(err, cfg.URL))
	}
	policy{&opts.Password, &opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.PoolTimeout,
		&opts.MaxRetries, &opts.PoolSize, &opts.DialerRetries, &opts.ContextTimeoutEnabled, &opts.MaintNotificationsConfig}.apply(cfg.Password)
	return redis.NewClusterClient(opts), nil
}

// policy points at the fields of redis.Options or redis.ClusterOptions (the
// pool size of a cluster is per node) that storeflow sets the same way for
// both.
type policy struct {
	password                                       *string
	dialTimeout, readTimeout, writeTimeout, poolTO *time.Duration
	maxRetries, poolSize, dialerRetries            *int
	contextTimeout                                 *bool
	maint                                          **maintnotifications.Config
}

// apply fills in what the URL did not set.
func (p policy) apply(password string) {
	*p.password = cmp.Or(*p.password, password)
	*p.dialTimeout = cmp.Or(*p.dialTimeout, dialTimeout)
	*p.readTimeout = cmp.Or(*p.readTimeout, ioTimeout)
	*p.writeTimeout = cmp.Or(*p.writeTimeout, ioTimeout)
	*p.poolTO = cmp.Or(*p.poolTO, poolTimeout)
	if *p.maxRetries == 0 {
		*p.maxRetries = -1 // none: the caller's fallback, not a retry (a cluster still follows MOVED and ASK)
	}
	// go-redis opens its dial circuit breaker after PoolSize failed dials;
	// a small pool makes a dead Redis fail fast sooner.
	*p.poolSize = cmp.Or(*p.poolSize, 4*runtime.GOMAXPROCS(0))
	*p.dialerRetries = 1
	*p.contextTimeout = true // a caller's deadline bounds its Redis round trip too
	// Redis sends no maintenance notifications unless it is Redis
	// Enterprise or Cloud; do not ask for them on every new connection.
	*p.maint = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// check holds REDIS_URL to the form New reads. Until the URL is known to be
// well formed, none of it is shown: the password may be anywhere. url.Parse's
// own message quotes the whole URL, and a password with a "/" in it ends the
// host early, so that its first part reads as a port and the rest as the
// path.
func check(cfg Config) (*url.URL, error) {
	if cfg.URL == "" {
		return nil, errors.New("REDIS_URL is empty: " + want)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.User == nil && strings.Contains(cfg.URL, "@")) {
		return nil, errors.New("REDIS_URL is not a valid URL (not shown: it may hold a password): " + want)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, errors.New("REDIS_URL is not a redis:// or rediss:// URL (not shown: it may hold a password): " + want)
	}
	if u.Host == "" {
		return nil, errors.New("REDIS_URL has no host: " + want)
	}
	return u, nil
}

// Open is New, then a PING (of every primary, for a cluster) within a
// second: a password Redis refuses is an error naming REDIS_URL and
// REDIS_PASSWORD; Redis not answering is not an error — it is logged, and
// the client's users go on without Redis until it answers. go-redis's own
// log lines go to log from then on, rate-limited.
func Open(cfg Config, log *slog.Logger) (redis.UniversalClient, error) {
	client, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "redis")
	logOnce.Do(func() { redis.SetLogger(&logBridge{log: ratelog.New(log, warnEvery)}) })

	ctx, cancel := context.WithTimeout(context.Background(), startPing)
	defer cancel()
	addrs := addrsOf(client)
	switch err := Ping(ctx, client); {
	case err == nil:
		log.Info("redis_connected", "addrs", addrs, "cluster", cfg.Cluster, "tls", strings.HasPrefix(cfg.URL, "rediss:"))
	case redis.IsAuthError(err):
		_ = client.Close()
		return nil, fmt.Errorf("REDIS_URL / REDIS_PASSWORD: Redis at %s refused the credentials: %w", addrs, err)
	default:
		log.Warn("redis_unavailable", "addrs", addrs, "cluster", cfg.Cluster, "error", redact.Error(err, cfg.URL),
			"detail", "going on without Redis until it answers")
	}
	return client, nil
}

// addrsOf is the server, or the cluster's seed nodes, client talks to: for a
// log line (no credentials in it).
func addrsOf(client redis.UniversalClient) string {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	}
	return fmt.Sprintf("%T", client)
}

// Ping checks that Redis answers PING, for a readiness probe: for a
// cluster, every primary (the slots of one that does not answer are
// unusable).
func Ping(ctx context.Context, client redis.UniversalClient) error {
	if c, ok := client.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			if err := node.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("cluster node %s: %w", node.Options().Addr, err)
			}
			return nil
		})
	}
	return client.Ping(ctx).Err()
}

// go-redis logs through one process-wide logger, by default to stderr, a
// line per failed dial. The first Open routes those lines into its logger,
// rate-limited.
var logOnce sync.Once

type logBridge struct{ log *ratelog.Logger }

func (b *logBridge) Printf(_ context.Context, format string, v ...any) {
	b.log.Log(slog.LevelWarn, "redis_client", "redis_client", "detail", fmt.Sprintf(format, v...))
}
