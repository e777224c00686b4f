package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

func newGatewayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gateway",
		Short: "Run the agent plus the built-in reverse proxy on gateway.listen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, warnings, err := fluxgate.Load(configPath, os.Environ())
			if err != nil {
				return err
			}
			if len(f.Gateway.Routes) == 0 {
				return fmt.Errorf("gateway: %s has no gateway.routes; add upstreams and routes (see docs/gateway.md)", configPath)
			}
			logger, level := agent.NewLoggerLevel(f.Log, cmd.ErrOrStderr())
			for _, w := range warnings {
				logger.Warn(w)
			}
			return runGatewayApp(cmd.Context(), f, logger, level)
		},
	}
}

// runGatewayApp is runApp with the gateway module: it runs until SIGINT
// or SIGTERM (or ctx is done) and returns nil after a graceful shutdown.
func runGatewayApp(ctx context.Context, f fluxgate.File, logger *slog.Logger, level *slog.LevelVar) error {
	app := fx.New(
		fx.NopLogger,
		fx.Supply(f.Config, f.Gateway, logger, level),
		fx.Supply(agent.ConfigFile(configPath), agent.Loader(fluxgate.AgentLoader)), // reloaded live
		fx.Supply(gateway.ConfigFile(configPath), gateway.Loader(fluxgate.GatewayLoader)),
		agent.Module,
		fx.Provide(fluxgate.GatewayHost),
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
