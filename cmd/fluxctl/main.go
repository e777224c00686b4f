// Command fluxctl is the client CLI for running FluxGate agents: it applies,
// lists and deletes policies through an agent's admin API, and shows its
// signals, control points and explanations. Every call sends the agent's
// admin token (--token or FLUXCTL_TOKEN); the agent answers 403 while it
// has none configured.
package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"
)

// cli holds the flags every subcommand shares.
type cli struct {
	agentURL string
	token    string
	output   string // table | json | yaml
	caFile   string // TLS: CAs that verify the agent
	certFile string // TLS: client certificate for mutual TLS
	keyFile  string
	// kubeconfig: apply writes custom resources to this cluster (cluster.go).
	kubeconfig string
	http       *http.Client // built from the TLS flags before a subcommand runs
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
	root.PersistentFlags().StringVar(&c.caFile, "ca-file", os.Getenv("FLUXCTL_CA_FILE"), "PEM CA certificates that verify an https:// agent (default: the system roots; env FLUXCTL_CA_FILE)")
	root.PersistentFlags().StringVar(&c.certFile, "cert-file", os.Getenv("FLUXCTL_CERT_FILE"), "PEM client certificate for an agent with tls.client_ca_file (mutual TLS), with --key-file (env FLUXCTL_CERT_FILE)")
	root.PersistentFlags().StringVar(&c.keyFile, "key-file", os.Getenv("FLUXCTL_KEY_FILE"), "PEM private key of --cert-file (env FLUXCTL_KEY_FILE)")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if c.token == "" {
			c.token = os.Getenv("FLUXCTL_TOKEN")
		}
		hc, err := c.httpClient()
		c.http = hc
		return err
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
