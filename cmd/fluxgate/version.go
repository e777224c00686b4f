package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/agent"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the FluxGate version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "fluxgate %s %s\n", agent.BuildVersion(), runtime.Version())
		},
	}
}
