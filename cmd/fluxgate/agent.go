package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/fluxgate/fluxgate/agent"
)

func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the FluxGate agent (embedded defaults when there is no config file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, warnings, err := agent.LoadConfig(configPath, os.Environ())
			if err != nil {
				return err
			}
			logger := agent.NewLogger(cfg.Log, cmd.ErrOrStderr())
			for _, w := range warnings {
				logger.Warn(w)
			}
			return runApp(cmd.Context(), cfg, logger)
		},
	}
}

// runApp runs the agent until SIGINT or SIGTERM and returns nil after a
// graceful shutdown, or the error that stopped it.
func runApp(ctx context.Context, cfg agent.Config, logger *slog.Logger) error {
	app := fx.New(
		fx.NopLogger,
		fx.Supply(cfg, logger),
		agent.Module,
		fx.StartTimeout(30*time.Second),
		fx.StopTimeout(30*time.Second),
	)
	if err := app.Start(ctx); err != nil {
		return err
	}
	sig := <-app.Wait()
	logger.Info("shutting down", "signal", fmt.Sprint(sig.Signal), "exit_code", sig.ExitCode)
	if err := app.Stop(context.Background()); err != nil {
		return err
	}
	if sig.ExitCode != 0 {
		return &exitError{code: sig.ExitCode, err: fmt.Errorf("agent stopped after a server failure")}
	}
	return nil
}
