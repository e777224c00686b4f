// Command fluxctl is the client CLI for running FluxGate agents: it applies,
// lists and deletes policies through an agent's admin API, and shows its
// signals, control points and explanations. Every call sends the agent's
// admin token (--token or FLUXCTL_TOKEN); the agent answers 403 while it
// has none configured.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// cli holds the flags every subcommand shares.
type cli struct {
	agentURL string
	token    string
	output   string // table | json | yaml
}

func newRootCmd() *cobra.Command {
	c := &cli{}
	root := &cobra.Command{
		Use:           "fluxctl",
		Short:         "Talk to running FluxGate agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defAgent := "http://127.0.0.1:8080"
	if v := os.Getenv("FLUXCTL_AGENT"); v != "" {
		defAgent = v
	}
	root.PersistentFlags().StringVar(&c.agentURL, "agent", defAgent, "agent HTTP API base URL (env FLUXCTL_AGENT)")
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	// The token's default is read after parsing, so that --help never
	// prints it.
	root.PersistentFlags().StringVar(&c.token, "token", "", "the agent's admin.token, sent as a bearer token (env FLUXCTL_TOKEN)")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if c.token == "" {
			c.token = os.Getenv("FLUXCTL_TOKEN")
		}
	}
	root.AddCommand(newApplyCmd(c), newGetCmd(c), newDeleteCmd(c), newExplainCmd(c), newSignalsCmd(c))
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "fluxctl:", err)
		os.Exit(1)
	}
}
