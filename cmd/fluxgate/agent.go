package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
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
			return runApp(cmd.Context(), f.Config, logger, fx.Supply(agent.ConfigFile(configPath), agent.Loader(fluxgate.AgentLoader), level)) // reloaded live
		},
	}
}

// runApp runs the agent (and any extra fx modules, such as the gateway)
// until SIGINT or SIGTERM, or until ctx is done, and returns nil after a
// graceful shutdown or the error that stopped it. The signal handler is
// installed before anything starts, so a signal that arrives while the
// agent is starting still shuts it down gracefully.
func runApp(ctx context.Context, cfg agent.Config, logger *slog.Logger, extra ...fx.Option) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := fx.New(append([]fx.Option{
		fx.NopLogger,
		fx.Supply(cfg, logger),
		agent.Module,
		fx.StartTimeout(30 * time.Second),
		fx.StopTimeout(30 * time.Second),
	}, extra...)...)
	if err := app.Start(ctx); err != nil {
		return err
	}
	var exitCode int
	select {
	case sig := <-app.Wait(): // a server failed (fx.Shutdowner)
		exitCode = sig.ExitCode
		logger.Info("shutting down", "exit_code", sig.ExitCode)
	case <-ctx.Done():
		logger.Info("shutting down", "reason", context.Cause(ctx).Error())
	}
	if err := app.Stop(context.Background()); err != nil {
		return err
	}
	if exitCode != 0 {
		return &exitError{code: exitCode, err: fmt.Errorf("stopped after a server failure")}
	}
	return nil
}
