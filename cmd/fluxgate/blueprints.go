package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/blueprints"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

func newBlueprintsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "blueprints",
		Short: "Generate policies, alert rules and dashboards from blueprints",
	}
	cmd.AddCommand(newBlueprintsListCmd(), newBlueprintsValuesCmd(), newBlueprintsGenerateCmd())
	return cmd
}

func newBlueprintsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the blueprints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, b := range blueprints.List() {
				fmt.Fprintf(w, "%s\t%s\n", b.Name, b.Summary)
			}
			return w.Flush()
		},
	}
}

func newBlueprintsValuesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "values NAME",
		Short: "Print a blueprint's values file: every parameter with its type, default and description",
		Long: "values prints a commented values file for blueprint NAME, filled with example\n" +
			"values: `generate` turns it, unchanged, into a working policy.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := blueprints.Lookup(args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b.Values())
			return err
		},
	}
}

func newBlueprintsGenerateCmd() *cobra.Command {
	var valuesFile, dir string
	cmd := &cobra.Command{
		Use:   "generate NAME --values VALUES.yaml --output-dir DIR",
		Short: "Generate a policy, its alert rules, dashboard and circuit graphs from a blueprint",
		Long: "generate decodes VALUES.yaml strictly for blueprint NAME, renders the policy,\n" +
			"checks it as `fluxgate policy validate` does, and writes into DIR: the policy,\n" +
			"Prometheus rules (and a promtool test file for SLOs), a Grafana dashboard and\n" +
			"the circuit graph (DOT and Mermaid). Bad values are reported as\n" +
			"file:line:col: message, one per line, and nothing is written.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if valuesFile == "" || dir == "" {
				return errors.New("blueprints generate needs --values and --output-dir")
			}
			b, err := blueprints.Lookup(args[0])
			if err != nil {
				return err
			}
			data, err := os.ReadFile(valuesFile)
			if err != nil {
				return err
			}
			out, err := b.Generate(valuesFile, data)
			var list strictyaml.ErrorList
			switch {
			case errors.As(err, &list):
				for _, e := range list {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return &exitError{code: 1, err: fmt.Errorf("blueprints generate: %s in %s", plural(len(list), "problem"), valuesFile)}
			case err != nil:
				return err
			}
			if err := out.WriteDir(dir); err != nil {
				return err
			}
			for _, f := range out.Files {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", filepath.Join(dir, f.Name))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&valuesFile, "values", "", "values file (fluxgate blueprints values NAME prints one to start from)")
	cmd.Flags().StringVar(&dir, "output-dir", "", "directory to write the generated files into (created if missing)")
	return cmd
}
