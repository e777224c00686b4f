package agent

import (
	"context"
	"log/slog"

	"go.uber.org/fx"
)

// moduleParams are what Module takes: a Config and a logger, and
// optionally the config file to reload, its loader and the logger's level.
type moduleParams struct {
	fx.In
	Config Config
	Logger *slog.Logger
	File   ConfigFile     `optional:"true"`
	Load   Loader         `optional:"true"`
	Level  *slog.LevelVar `optional:"true"`
}

// Module wires an Agent into an fx application. It needs a Config and a
// *slog.Logger supplied by the caller (and, optionally, a ConfigFile to
// reload, the Loader that reads it and the logger's *slog.LevelVar); it starts the agent on fx start,
// stops it gracefully on fx stop, and shuts the application down if a
// server fails while running.
var Module = fx.Module("agent",
	fx.Provide(func(p moduleParams) (*Agent, error) {
		return New(Options{Config: p.Config, Logger: p.Logger, ConfigFile: string(p.File), LoadConfig: p.Load, LogLevel: p.Level})
	}),
	fx.Invoke(func(lc fx.Lifecycle, a *Agent, sd fx.Shutdowner) {
		stop := make(chan struct{})
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				if err := a.Start(ctx); err != nil {
					return err
				}
				go func() {
					select {
					case err := <-a.Err():
						a.logger.Error("agent failed", "err", err)
						_ = sd.Shutdown(fx.ExitCode(1))
					case <-stop:
					}
				}()
				return nil
			},
			OnStop: func(ctx context.Context) error {
				close(stop)
				return a.Stop(ctx)
			},
		})
	}),
)
