// Command fluxgate is the FluxGate server binary and its local tooling:
// the agent itself, config file editing and policy validation.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// configPath is the --config flag shared by every subcommand that reads
// or edits fluxgate.yaml.
var configPath string

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "fluxgate",
		Short:         "FluxGate adaptive flow-control agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&configPath, "config", "fluxgate.yaml", "path of the agent config file")
	root.AddCommand(
		newAgentCmd(),
		newConfigCmd(),
		newPolicyCmd(),
		newAlertsCmd(),
		newBlueprintsCmd(),
		newDashboardsCmd(),
		newDemoCmd(),
		newGatewayCmd(),
		newSimCmd(),
		newVersionCmd(),
	)
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "fluxgate:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e := (*exitError)(nil); errors.As(err, &e) {
		return e.code
	}
	return 1
}
