package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/alerts"
)

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Prometheus alert rules for FluxGate",
	}
	cmd.AddCommand(newAlertsGenerateCmd())
	return cmd
}

func newAlertsGenerateCmd() *cobra.Command {
	var outDir string
	cmd := &cobra.Command{
		Use:   "generate [--output-dir DIR]",
		Short: "Write the built-in operational alert rules as a Prometheus rule file",
		Long: "generate writes " + alerts.FileName + " into DIR: alerts for agents\n" +
			"down, policy reload errors, invalid signals, flux meter error rate and\n" +
			"latency, fail-open and Redis errors, gateway 5xx rate and latency, and open\n" +
			"circuit breakers, each with a severity label and summary, description and\n" +
			"runbook_url annotations. Add the file to rule_files in prometheus.yml.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := alerts.Write(outDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&outDir, "output-dir", ".", "directory to write the rule file into")
	return cmd
}
