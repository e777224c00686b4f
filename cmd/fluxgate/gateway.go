package main

import (
	"errors"
	"fmt"
	"io/fs"
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
			if _, err := os.Stat(configPath); errors.Is(err, fs.ErrNotExist) && len(f.Gateway.Routes) == 0 {
				return fmt.Errorf("gateway: config file %s does not exist; write gateway.upstreams and gateway.routes into it (see docs/gateway.md)", configPath)
			}
			if len(f.Gateway.Routes) == 0 {
				return fmt.Errorf("gateway: %s has no gateway.routes; add upstreams and routes (see docs/gateway.md)", configPath)
			}
			logger, level := agent.NewLoggerLevel(f.Log, cmd.ErrOrStderr())
			for _, w := range warnings {
				logger.Warn(w)
			}
			noteMissingConfig(cmd, logger)
			return runParts(cmd.Context(), f, logger, level, true)
		},
	}
}
