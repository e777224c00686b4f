package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the FluxGate agent (embedded defaults when there is no config file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, warnings, err := fluxgate.Load(configPath, os.Environ())
			if err != nil {
				return err
			}
			logger, level := agent.NewLoggerLevel(f.Log, cmd.ErrOrStderr())
			for _, w := range warnings {
				logger.Warn(w)
			}
			noteMissingConfig(cmd, logger)
			return runParts(cmd.Context(), f, logger, level, false)
		},
	}
}

// noteMissingConfig logs that the config file does not exist, so that a
// mistyped --config is not silently a run on defaults: a warning when
// --config was given, an info line for the default ./fluxgate.yaml. The
// config watcher loads the file if it appears.
func noteMissingConfig(cmd *cobra.Command, logger *slog.Logger) {
	if _, err := os.Stat(configPath); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	msg, args := "config file does not exist: running on defaults until it appears", []any{"path", configPath}
	if cmd.Flags().Changed("config") {
		logger.Warn(msg, args...)
		return
	}
	logger.Info(msg, args...)
}

// runParts is the composition root of `fluxgate agent` and `fluxgate
// gateway`: it builds the agent, with withGateway the gateway joined to
// it, and the one watcher of the config file, and runs them as parts of
// one fluxgate.Run group (in that order: the gateway starts once the
// agent serves its policies, and stops before it) until SIGINT or
// SIGTERM, until ctx is done, or until a part fails. It returns nil after
// a graceful shutdown, else every part's error. The signal handler is
// installed before anything starts, so a signal that arrives while the
// agent is starting still shuts it down gracefully.
func runParts(ctx context.Context, f fluxgate.File, logger *slog.Logger, level *slog.LevelVar, withGateway bool) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(agent.Options{Config: f.Config, Logger: logger, LogLevel: level})
	if err != nil {
		return err
	}
	parts := []fluxgate.Part{{Name: "agent", Runner: a}}
	watch := fluxgate.WatcherOptions{Path: configPath, Environ: os.Environ(), Logger: logger, Agent: a}
	if withGateway {
		svc := gateway.NewService(fluxgate.GatewayHost(a), f.Gateway, logger)
		parts = append(parts, fluxgate.Part{Name: "gateway", Runner: svc})
		watch.Gateway = svc
	}
	parts = append(parts, fluxgate.Part{Name: "config watcher", Runner: fluxgate.NewWatcher(watch)})
	return fluxgate.Run(ctx, logger, parts...)
}
