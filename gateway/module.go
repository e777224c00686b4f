package gateway

import (
	"context"
	"log/slog"

	"go.uber.org/fx"

	"github.com/fluxgate/fluxgate/agent"
)

// Module runs a Service next to the agent of agent.Module: include both,
// agent.Module first, so the gateway starts after the agent and stops
// before it.
var Module = fx.Module("gateway",
	fx.Provide(func(a *agent.Agent, logger *slog.Logger) *Service {
		return NewService(a, logger)
	}),
	fx.Invoke(func(lc fx.Lifecycle, s *Service) {
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error { return s.Start(ctx) },
			OnStop:  func(ctx context.Context) error { return s.Stop(ctx) },
		})
	}),
)
