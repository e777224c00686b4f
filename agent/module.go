package agent

import (
	"context"
	"log/slog"

	"go.uber.org/fx"
)

// Module wires an Agent into an fx application. It needs a Config and a
// *slog.Logger supplied by the caller; it starts the agent on fx start,
// stops it gracefully on fx stop, and shuts the application down if a
// server fails while running.
var Module = fx.Module("agent",
	fx.Provide(func(cfg Config, logger *slog.Logger) (*Agent, error) {
		return New(Options{Config: cfg, Logger: logger})
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
