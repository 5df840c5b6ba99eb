package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/storeflow/storeflow/app"
	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/pipeline"
)

// SharedReport is the dwell state in Redis (DWELL_STATE=redis) against the
// in-memory detector: the same scripted visits at full speed through two
// apps that differ only in DWELL_STATE, one after the other, both with the
// cache in the same Redis.
type SharedReport struct {
	Memory, Redis PipelineReport
	// What each run cost Redis: commands executed (INFO commandstats, INFO
	// itself not counted; a script's own calls counted too) and CPU time
	// (INFO cpu).
	MemoryCommands, RedisCommands int64
	MemoryCPU, RedisCPU           time.Duration
	Scripts                       int64 // dwell script calls (EVALSHA, EVAL) of the Redis run
	RoundTrips                    int64 // pipelines the dwell workers sent in the Redis run
}

// Shared plays opts.Shoppers visits through the app build makes with
// DWELL_STATE=memory, then through the one it makes with DWELL_STATE=redis
// (on the Redis at redisURL), and reads what each run cost Redis. Each app
// is run and stopped before the next is built.
func Shared(ctx context.Context, build func(dwellState string) (*app.App, error), redisURL, password string, opts Options) (SharedReport, error) {
	var r SharedReport
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		return r, fmt.Errorf("bench: REDIS_URL: %w", redact.Error(err, redisURL))
	}
	ropts.Password = cmp.Or(ropts.Password, password)
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	for _, run := range []struct {
		state    string
		report   *PipelineReport
		commands *int64
		cpu      *time.Duration
	}{
		{pipeline.DwellStateMemory, &r.Memory, &r.MemoryCommands, &r.MemoryCPU},
		{pipeline.DwellStateRedis, &r.Redis, &r.RedisCommands, &r.RedisCPU},
	} {
		a, err := build(run.state)
		if err != nil {
			return r, err
		}
		err = running(ctx, a, func(ctx context.Context, b *bench) error {
			before, err := redisStats(ctx, rdb)
			if err != nil {
				return err
			}
			trips := b.pipeline.Counts().StateRoundTrips
			if *run.report, err = b.pipelineRun(ctx, opts); err != nil {
				return err
			}
			after, err := redisStats(ctx, rdb)
			if err != nil {
				return err
			}
			*run.cpu = after.cpu - before.cpu
			for cmd, n := range after.calls {
				n -= before.calls[cmd]
				*run.commands += n
				if run.state == pipeline.DwellStateRedis && (cmd == "evalsha" || cmd == "eval") {
					r.Scripts += n
				}
			}
			if run.state == pipeline.DwellStateRedis {
				r.RoundTrips = b.pipeline.Counts().StateRoundTrips - trips
			}
			return nil
		})
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// stats is what Redis says it did so far.
type stats struct {
	calls map[string]int64 // by command, INFO not counted
	cpu   time.Duration    // used_cpu_sys + used_cpu_user
}

func redisStats(ctx context.Context, rdb redis.UniversalClient) (stats, error) {
	info, err := rdb.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return stats{}, fmt.Errorf("bench: INFO: %w", err)
	}
	s := stats{calls: map[string]int64{}}
	for line := range strings.SplitSeq(info, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			sec, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return stats{}, fmt.Errorf("bench: INFO cpu: %q: %w", line, err)
			}
			s.cpu += time.Duration(sec * float64(time.Second))
		}
		name, rest, ok := strings.Cut(line, ":calls=")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			return stats{}, fmt.Errorf("bench: INFO commandstats: %q: %w", line, err)
		}
		s.calls[name] = n
	}
	return s, nil
}

// LocalRedis starts redis-server from PATH on a free loopback port, without
// persistence, and returns its URL once it answers PING, and a stop that
// kills it.
func LocalRedis(ctx context.Context) (url string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("bench: --redis: redis-server not found on PATH (apt-get install -y redis-server), or set REDIS_URL")
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "storeflow-bench-redis")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--logfile", "")
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("bench: --redis: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	url = "redis://" + addr + "/0"
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", nil, fmt.Errorf("bench: --redis: redis-server on %s did not answer PING within 10s", addr)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval
	}
	return url, stop, nil
}
