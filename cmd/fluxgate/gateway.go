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
	"github.com/fluxgate/fluxgate/gateway"
)

func newGatewayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gateway",
		Short: "Run the agent plus the built-in reverse proxy on gateway.listen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, warnings, err := agent.LoadConfig(configPath, os.Environ())
			if err != nil {
				return err
			}
			if len(cfg.Gateway.Routes) == 0 {
				return fmt.Errorf("gateway: %s has no gateway.routes; add upstreams and routes (see docs/gateway.md)", configPath)
			}
			logger, level := agent.NewLoggerLevel(cfg.Log, cmd.ErrOrStderr())
			for _, w := range warnings {
				logger.Warn(w)
			}
			return runGatewayApp(cmd.Context(), cfg, logger, level)
		},
	}
}

// runGatewayApp is runApp with the gateway module: it runs until SIGINT
// or SIGTERM (or ctx is done) and returns nil after a graceful shutdown.
func runGatewayApp(ctx context.Context, cfg agent.Config, logger *slog.Logger, level *slog.LevelVar) error {
	app := fx.New(
		fx.NopLogger,
		fx.Supply(cfg, logger, gateway.ConfigFile(configPath), agent.ConfigFile(configPath), level), // reloaded live
		agent.Module,
		gateway.Module,
		fx.StartTimeout(30*time.Second),
		fx.StopTimeout(30*time.Second),
	)
	if err := app.Start(ctx); err != nil {
		return err
	}
	var sig fx.ShutdownSignal
	select {
	case sig = <-app.Wait():
	case <-ctx.Done():
	}
	logger.Info("shutting down", "signal", fmt.Sprint(sig.Signal), "exit_code", sig.ExitCode)
	if err := app.Stop(context.Background()); err != nil {
		return err
	}
	if sig.ExitCode != 0 {
		return &exitError{code: sig.ExitCode, err: fmt.Errorf("gateway stopped after a server failure")}
	}
	return nil
}
