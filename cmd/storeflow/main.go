// Command storeflow runs the reacting store: with no settings a self-contained
// demo (embedded broker, simulated shoppers, focus detection, coupons); with
// settings one part of a real deployment. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/storeflow/storeflow/app"
	"github.com/storeflow/storeflow/bench"
	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/redact"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go onSignals(cancel, func() { os.Exit(1) })
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "storeflow:", err)
		os.Exit(1)
	}
}

// onSignals makes the first SIGINT or SIGTERM a graceful shutdown (cancel:
// intake stops, what is in flight finishes within SHUTDOWN_TIMEOUT) and the
// second an immediate exit, for an operator who will not wait.
func onSignals(cancel func(), exit func()) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	waitSignals(sig, cancel, exit)
}

func waitSignals(sig <-chan os.Signal, cancel func(), exit func()) {
	s := <-sig
	fmt.Fprintf(os.Stderr, "storeflow: %s: shutting down; send it again to exit at once\n", s)
	cancel()
	<-sig
	exit()
}

const usage = `usage: storeflow [run]                 run the store (settings from the environment; see README.md)
       storeflow env                   list every environment variable with the value in effect (secrets
                                       masked) and, where set, its default; then check the settings
       storeflow gen --out DIR [--seed N] [--customers N] [--products N] [--days N] [--reference YYYY-MM-DD]
                                       write a catalog with ground truth and history as CSV files
       storeflow train --data DIR --out FILE
                                       train a model on DIR's history, evaluate it, save it
       storeflow bench [--shoppers N] [--realtime-shoppers N] [--duration D] [--json] [--cpuprofile FILE]
                                       measure in-process: broker ceiling, pipeline moves/s, latency,
                                       allocations, and shoppers at real speed (lag, counts, memory)
       storeflow bench --tcp [--publishers 8] [--visits 20000] [--linger 12] [--paced-fraction 0.5]
                       [--external HOST:PORT] [--short] [--json]
                                       the real path: sensors and a phone over TCP, storeflow a child
                                       process, against a reference broker (mosquitto when installed)
       storeflow bench --redis [--shoppers N]
                                       the dwell state in Redis against the in-memory one: moves/s, Redis
                                       calls, round trips and CPU (REDIS_URL, or a redis-server from PATH)
       storeflow replay [--speed X] [--all] FILE...
                                       play the original demo's scenario files or recordings to the broker
                                       (a running storeflow's embedded one, or MQTT_HOST), ts rebased to now
       storeflow record [--out FILE] [--topic FILTER]...
                                       write every message on customer/# as JSON lines, until Ctrl-C
       storeflow passwd USER < FILE    print a BROKER_AUTH_FILE user line, the password read from stdin
       storeflow healthcheck [--path /readyz] [--timeout 2s]
                                       exit 0 if the storeflow on HTTP_ADDR answers 200, else 1 (for
                                       a container's HEALTHCHECK)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "run":
		return serve(ctx, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "gen":
		return gen(args[1:], stdout, stderr)
	case "train":
		return trainModel(args[1:], stdout, stderr)
	case "replay":
		return replayFiles(ctx, args[1:], stdout, stderr)
	case "record":
		return record(ctx, args[1:], stdout, stderr)
	case "passwd":
		return passwd(args[1:], os.Stdin, stdout)
	case "healthcheck":
		return healthcheck(ctx, args[1:], stdout, stderr)
	case "env":
		return listEnv(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// listEnv prints every variable as KEY=value with the value in effect, and
// for one the environment sets, the default beside it; then it checks the
// whole as a start would, so a bad value is an error here too.
func listEnv(stdout io.Writer) error {
	cfg, err := config.Load(nil)
	for _, s := range config.Effective(nil) {
		switch {
		case s.Key == "BROKER_LISTEN_ADDR" && !s.Set && err == nil && cfg.Broker.Embedded():
			fmt.Fprintf(stdout, "%s=\t# unset: %s, from MQTT_PORT\n", s.Key, cfg.Broker.Listen())
			continue
		case !s.Set:
			fmt.Fprintf(stdout, "%s=%s\n", s.Key, s.Value)
			continue
		}
		d := s.Default
		if d == "" {
			d = "(empty)"
		}
		fmt.Fprintf(stdout, "%s=%s\t# set; default %s\n", s.Key, s.Value, d)
	}
	return err
}

// runBench runs the real wiring with the simulator and HTTP off, on a private
// broker port: the broker's ceiling, scripted visits at full speed, then
// shoppers at real speed.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	shoppers := fs.Int("shoppers", 20000, "visits to play at full speed; each lingers in Boys until focused")
	realtime := fs.Int("realtime-shoppers", 0, "shoppers walking at real speed (0: as many as -shoppers)")
	duration := fs.Duration("duration", 30*time.Second, "how long the shoppers walk at real speed; the ceiling runs a third of it")
	asJSON := fs.Bool("json", false, "end the output with one JSON line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole bench to this file (go tool pprof)")
	shared := fs.Bool("redis", false, "compare DWELL_STATE=redis with the in-memory detector (full speed only), on REDIS_URL or a redis-server from PATH")
	tcp := fs.Bool("tcp", false, "the real path: sensor connections and a phone over TCP, storeflow run as a child process, beside a reference broker")
	var topts tcpFlags
	fs.IntVar(&topts.publishers, "publishers", 8, "--tcp: sensor connections publishing the visits")
	fs.IntVar(&topts.visits, "visits", 20000, "--tcp: scripted visits per load")
	fs.IntVar(&topts.linger, "linger", 12, "--tcp: moves per visit inside Boys (more than FOCUS_DWELL in seconds)")
	fs.Float64Var(&topts.pacedFraction, "paced-fraction", 0.5, "--tcp: the paced load's rate as a fraction of the full-speed ingest rate")
	fs.StringVar(&topts.external, "external", "", "--tcp: HOST:PORT of a broker for the reference and for storeflow on an outside broker (default: a mosquitto the bench starts, if installed)")
	fs.BoolVar(&topts.short, "short", false, "--tcp: a short run for tests (2,000 visits over 2 connections unless set)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tcp {
		if *cpuProfile != "" {
			return fmt.Errorf("bench: --cpuprofile profiles this process, which with --tcp is only the load: storeflow runs as a child process")
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if topts.short {
			if !set["visits"] {
				topts.visits = 2000
			}
			if !set["publishers"] {
				topts.publishers = 2
			}
		}
		return benchTCP(ctx, topts, *asJSON, stdout)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: --cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *realtime == 0 {
		*realtime = *shoppers
	}
	switch {
	case *shoppers < 1:
		return fmt.Errorf("bench: -shoppers must be at least 1")
	case *realtime < 1:
		return fmt.Errorf("bench: -realtime-shoppers must be at least 1")
	case *duration < time.Second:
		return fmt.Errorf("bench: -duration must be at least 1s")
	}
	cfg, err := config.LoadWith(map[string]string{
		"SIMULATOR_ENABLED":    "false",
		"HTTP_ADDR":            config.HTTPOff,
		"BROKER_LISTEN_ADDR":   "127.0.0.1:0",
		"PREDICTION_THRESHOLD": "0", // every focus gets a coupon: the whole path is measured
		// A customer visits many times in a run: no frequency cap, no holdout.
		"COUPONS_PER_SHOPPER_PER_DAY": "0", "COUPON_DEPARTMENT_COOLDOWN": "0", "HOLDOUT_FRACTION": "0",
	})
	if err != nil {
		return err
	}
	if !cfg.Broker.Embedded() {
		return fmt.Errorf("bench: runs on the embedded broker; unset MQTT_HOST")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *shared {
		return benchShared(ctx, cfg, log, *shoppers, stdout)
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	linger := int(cfg.Pipeline.FocusDwell/time.Second) + 2
	fmt.Fprintf(stdout, "bench: %d visits (enter, %d moves in Boys, exit), %d real-time shoppers for %s, FOCUS_DWELL=%s, DWELL_WORKERS=%d, FOCUS_WORKERS=%d, GOMAXPROCS=%d\n",
		*shoppers, linger, *realtime, *duration, cfg.Pipeline.FocusDwell, cfg.Pipeline.DwellWorkers, cfg.Pipeline.FocusWorkers, runtime.GOMAXPROCS(0))
	r, err := bench.Run(ctx, a, bench.Options{
		Shoppers: *shoppers, Linger: linger,
		Duration: *duration, RealtimeShoppers: *realtime, RealtimeLinger: linger,
	})
	if err != nil {
		return err
	}
	r.Print(stdout)
	if *asJSON {
		b, err := r.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return nil
}

// tcpFlags are bench --tcp's own flags.
type tcpFlags struct {
	publishers, visits, linger int
	pacedFraction              float64
	external                   string
	short                      bool
}

// benchTCP is bench --tcp: this binary runs as the storeflow under test,
// with the environment it was given and the bench's settings on top.
func benchTCP(ctx context.Context, f tcpFlags, asJSON bool, stdout io.Writer) error {
	switch {
	case f.publishers < 1:
		return fmt.Errorf("bench: --publishers must be at least 1")
	case f.visits < 1:
		return fmt.Errorf("bench: --visits must be at least 1")
	case f.pacedFraction <= 0 || f.pacedFraction > 1:
		return fmt.Errorf("bench: --paced-fraction %g: want more than 0, at most 1", f.pacedFraction)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: the storeflow binary: %w", err)
	}
	cfg, err := config.LoadWith(map[string]string{"SIMULATOR_ENABLED": "false", "PREDICTION_THRESHOLD": "0", "DATA_DIR": "", "MQTT_HOST": "",
		"COUPONS_PER_SHOPPER_PER_DAY": "0", "COUPON_DEPARTMENT_COOLDOWN": "0", "HOLDOUT_FRACTION": "0"})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench --tcp: %d visits per load (enter, %d moves in Boys, exit) over %d sensor connections, a phone at QoS 1 on %s, FOCUS_DWELL=%s, MQTT_QOS=%d on an outside broker, GOMAXPROCS=%d\n",
		f.visits, f.linger, f.publishers, cfg.Pipeline.PredictionTopic, cfg.Pipeline.FocusDwell, cfg.Broker.QoS, runtime.GOMAXPROCS(0))
	r, err := bench.TCP(ctx, cfg, bench.TCPOptions{Exe: exe, Env: os.Environ(), Publishers: f.publishers, Visits: f.visits,
		Linger: f.linger, PacedFraction: f.pacedFraction, External: f.external})
	if err != nil {
		return err
	}
	r.Print(stdout)
	if asJSON {
		b, err := r.JSON()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return nil
}

// benchShared is bench --redis: the scripted visits through the in-memory
// detector and through DWELL_STATE=redis, both with the cache in that Redis
// too (REDIS_URL, or a redis-server the bench starts), so that they differ
// only in the dwell state.
func benchShared(ctx context.Context, cfg config.Config, log *slog.Logger, shoppers int, stdout io.Writer) error {
	if cfg.Store.RedisURL == "" {
		url, stop, err := bench.LocalRedis(ctx)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Store.RedisURL = url
	}
	// Ten times the full-speed part's visit: one focus per 120 moves, not
	// 12, so that the dwell state is measured rather than the focus stages
	// (a real store sees one focus per several minutes of moves).
	linger := 10 * (int(cfg.Pipeline.FocusDwell/time.Second) + 2)
	fmt.Fprintf(stdout, "bench --redis: %d visits (enter, %d moves in Boys, exit) through DWELL_STATE=memory, then redis, Redis at %s, DWELL_WORKERS=%d, GOMAXPROCS=%d\n",
		shoppers, linger, redact.URL(cfg.Store.RedisURL), cfg.Pipeline.DwellWorkers, runtime.GOMAXPROCS(0))
	build := func(state string) (*app.App, error) {
		c := cfg
		c.Pipeline.DwellState = state
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return app.New(ctx, c, log)
	}
	r, err := bench.Shared(ctx, build, cfg.Store.RedisURL, cfg.Store.RedisPassword, bench.Options{Shoppers: shoppers, Linger: linger})
	if err != nil {
		return err
	}
	r.Print(stdout)
	return nil
}

func serve(ctx context.Context, stderr io.Writer) error {
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	log, closeLog, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	log.Info("storeflow starting", cfg.Redacted()...)
	// SIGHUP reloads the model files; caught from before the start, as its
	// default would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	go reloadOnHangup(ctx, hup, a.ReloadModels)
	return a.Run(ctx)
}

// reloadOnHangup calls reload at each signal on hup until ctx is done.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, reload func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload()
		}
	}
}

// newLogger builds the process logger from LOG_LEVEL, LOG_FORMAT and
// LOG_FILE: always to stderr, and appended to LOG_FILE too when set (the
// seeds' console and file handlers).
func newLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	w, closeFn := stderr, func() {}
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE=%s: %w", cfg.LogFile, err)
		}
		w, closeFn = io.MultiWriter(stderr, f), func() { _ = f.Close() }
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel.Level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), closeFn, nil
}
