package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
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
			return runParts(cmd.Context(), f, logger, level, true)
		},
	}
}
