package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/storeflow/storeflow/broker"
	"github.com/storeflow/storeflow/config"
	"github.com/storeflow/storeflow/internal/redact"
	"github.com/storeflow/storeflow/replay"
)

// topics are the replay topics of cfg.
func topics(cfg config.Config) replay.Topics {
	return replay.Topics{
		Enter: cfg.Simulator.EnterTopic, Move: cfg.Simulator.MoveTopic, Exit: cfg.Simulator.ExitTopic,
		Browsing: cfg.Pipeline.BrowsingTopic, Prediction: cfg.Pipeline.PredictionTopic,
	}
}

// toolLogger logs a tool's warnings to stderr; with LOG_LEVEL=debug
// everything (the broker connection's info lines speak of storeflow's own).
func toolLogger(cfg config.Config, stderr io.Writer) *slog.Logger {
	level := max(cfg.LogLevel.Level, slog.LevelWarn)
	if cfg.LogLevel.Level <= slog.LevelDebug {
		level = cfg.LogLevel.Level
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// replayFiles plays scenario files and recordings to the broker of the MQTT
// settings (a running storeflow's embedded broker, or MQTT_HOST).
func replayFiles(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	speed := fs.Float64("speed", 1, "play this many times faster than the files' own clock (event time keeps the files' clock)")
	all := fs.Bool("all", false, "also publish what storeflow computes itself: BROWSING and PREDICTION steps, every topic of a recording")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("replay: name at least one scenario or recording file")
	}
	if *speed <= 0 || *speed > 1e6 {
		return fmt.Errorf("replay: --speed %v: want more than 0 and at most 1000000", *speed)
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	// Every file is read and checked before anything is published: a file
	// that is not a scenario or recording at all stops the replay here.
	var files []*replay.File
	bad, held, steps := 0, 0, 0
	for _, name := range fs.Args() {
		f, err := loadFile(name, replay.Options{Topics: topics(cfg), All: *all})
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		for _, e := range f.Bad {
			fmt.Fprintf(stderr, "replay: %v (left out)\n", e)
		}
		bad, held, steps = bad+len(f.Bad), held+f.Held, steps+len(f.Steps)
		files = append(files, f)
	}
	tc := cfg.Broker.ToolClient(fmt.Sprintf("replay-%d", os.Getpid()))
	conn, err := broker.Dial(ctx, tc, toolLogger(cfg, stderr), nil)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer conn.Close()
	start := time.Now()
	n, err := replay.Play(ctx, conn, files, *speed)
	fmt.Fprintf(stdout, "replay: published %d of %d steps from %d file(s) to %s in %s at speed %v; %d left out (pauses, and without --all what storeflow computes itself), %d bad\n",
		n, steps, len(files), redact.URLs(tc.Host), time.Since(start).Round(time.Millisecond), *speed, held, bad)
	if err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("replay: %d bad steps left out (listed above)", bad)
	}
	return nil
}

func loadFile(name string, opt replay.Options) (*replay.File, error) {
	r, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return replay.Load(name, r, opt)
}

// filters is a repeatable flag.
type filters []string

func (f *filters) String() string     { return strings.Join(*f, ",") }
func (f *filters) Set(v string) error { *f = append(*f, v); return nil }

// record writes every message on the storeflow topics to a file, as JSON
// lines storeflow replay plays back, until interrupted.
func record(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "-", "file to write (replaced if it exists); - for standard output")
	var topicFlags filters
	fs.Var(&topicFlags, "topic", "topic filter to record (repeatable; default customer/# and every configured topic outside it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errors.New("record: takes no arguments; stop it with Ctrl-C")
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	subs := []string(topicFlags)
	if len(subs) == 0 {
		subs = defaultFilters(cfg)
	}
	for _, f := range subs {
		if f == "" {
			return errors.New("record: --topic: empty filter")
		}
	}
	w := stdout
	var file *os.File
	if *out != "-" {
		if file, err = os.Create(*out); err != nil {
			return fmt.Errorf("record: --out: %w", err)
		}
		defer file.Close() // on the error paths; closed and checked below
		w = file
	}
	log := toolLogger(cfg, stderr)
	tc := cfg.Broker.ToolClient(fmt.Sprintf("record-%d", os.Getpid()))
	conn, err := broker.Dial(ctx, tc, log, nil)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	defer conn.Close()
	ready := make(chan struct{})
	go func() {
		select {
		case <-ready:
			fmt.Fprintf(stderr, "record: recording %s from %s to %s; stop with Ctrl-C\n", strings.Join(subs, ", "), redact.URLs(tc.Host), *out)
		case <-ctx.Done():
		}
	}()
	r, err := replay.Record(ctx, conn, subs, w, log, ready)
	fmt.Fprintf(stderr, "record: %d messages written, %d dropped\n", r.Written, r.Dropped)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return fmt.Errorf("record: --out: %w", err)
		}
	}
	return nil
}

// defaultFilters are customer/# and every configured topic it does not cover.
func defaultFilters(cfg config.Config) []string {
	out := []string{"customer/#"}
	for _, t := range []string{cfg.Simulator.EnterTopic, cfg.Simulator.MoveTopic, cfg.Simulator.ExitTopic,
		cfg.Pipeline.EntryTopic, cfg.Pipeline.FocusTopic, cfg.Pipeline.PredictionTopic, cfg.Pipeline.BrowsingTopic} {
		if !strings.HasPrefix(t, "customer/") && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
