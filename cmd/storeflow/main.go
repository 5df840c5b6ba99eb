// Command storeflow runs the reacting store: with no settings a self-contained
// demo (embedded broker, simulated shoppers, focus detection, coupons); with
// settings one part of a real deployment. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/storeflow/storeflow/app"
	"github.com/storeflow/storeflow/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "storeflow:", err)
		os.Exit(1)
	}
}

const usage = `usage: storeflow [run]     run the store (settings from the environment; see README.md)
       storeflow env       list every environment variable with its default
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "run":
		return serve(ctx, stderr)
	case "env":
		for _, p := range config.Params() {
			fmt.Fprintf(stdout, "%s=%s\n", p.Key, p.Default)
		}
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func serve(ctx context.Context, stderr io.Writer) error {
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel.Level}))
	log.Info("storeflow starting", cfg.Redacted()...)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
