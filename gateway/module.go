package gateway

import (
	"context"
	"log/slog"

	"go.uber.org/fx"
)

// ConfigFile is the path of fluxgate.yaml; supply it and a Loader to
// Module (both optional) for live reload of the gateway section.
type ConfigFile string

type serviceParams struct {
	fx.In
	Host   Host
	Config Config
	Logger *slog.Logger
	File   ConfigFile `optional:"true"`
	Load   Loader     `optional:"true"`
}

// Module runs a Service, on the supplied Config and Host, next to the
// agent of agent.Module (package fluxgate provides the Host that joins
// them): include both, agent.Module first, so the gateway starts after the agent and stops
// before it.
var Module = fx.Module("gateway",
	fx.Provide(func(p serviceParams) *Service {
		return NewServiceWithOptions(p.Host, ServiceOptions{Config: p.Config, Logger: p.Logger, ConfigFile: string(p.File), LoadConfig: p.Load})
	}),
	fx.Invoke(func(lc fx.Lifecycle, s *Service) {
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error { return s.Start(ctx) },
			OnStop:  func(ctx context.Context) error { return s.Stop(ctx) },
		})
	}),
)
