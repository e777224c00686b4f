package gateway

import (
	"context"
	"log/slog"

	"go.uber.org/fx"

	"github.com/fluxgate/fluxgate/agent"
)

// ConfigFile is the path of fluxgate.yaml; supply it to Module (optional)
// for live reload of the gateway section.
type ConfigFile string

type serviceParams struct {
	fx.In
	Agent  *agent.Agent
	Logger *slog.Logger
	File   ConfigFile `optional:"true"`
}

// Module runs a Service next to the agent of agent.Module: include both,
// agent.Module first, so the gateway starts after the agent and stops
// before it.
var Module = fx.Module("gateway",
	fx.Provide(func(p serviceParams) *Service {
		return NewServiceWithOptions(p.Agent, ServiceOptions{Logger: p.Logger, ConfigFile: string(p.File)})
	}),
	fx.Invoke(func(lc fx.Lifecycle, s *Service) {
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error { return s.Start(ctx) },
			OnStop:  func(ctx context.Context) error { return s.Stop(ctx) },
		})
	}),
)
