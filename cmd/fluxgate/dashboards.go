package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/dashboards"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

func newDashboardsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboards",
		Short: "Generate Grafana dashboards",
	}
	cmd.AddCommand(newDashboardsGenerateCmd())
	return cmd
}

func newDashboardsGenerateCmd() *cobra.Command {
	var (
		policyFiles []string
		datasource  string
		outDir      string
	)
	cmd := &cobra.Command{
		Use:   "generate [--policy FILE]... [--datasource NAME] [--output-dir DIR]",
		Short: "Write the overview dashboard and one dashboard per policy as Grafana JSON",
		Long: "generate writes the FluxGate Gateway Overview dashboard (uid fluxgate-ops-01)\n" +
			"to DIR/fluxgate-ops-01.json and, for every Policy in each --policy FILE, a\n" +
			"dashboard of its flux meters, signals and actuators to DIR/<uid>.json\n" +
			"(uid fluxgate-NAMESPACE-NAME). Import them in Grafana or provision them\n" +
			"from DIR. --datasource sets the default of the dashboards' datasource\n" +
			"variable, the name of a Prometheus data source. TrafficPolicy documents\n" +
			"are skipped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := dashboards.Options{Datasource: datasource}
			ds := []*dashboards.Dashboard{dashboards.Overview(opts)}
			for _, file := range policyFiles {
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				docs, err := policies.Parse(file, data)
				var list strictyaml.ErrorList
				if errors.As(err, &list) {
					for _, e := range list {
						fmt.Fprintln(cmd.ErrOrStderr(), e)
					}
					return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s)", file, len(list))}
				}
				if err != nil {
					return err
				}
				for _, doc := range docs {
					p, ok := doc.Object.(*policies.Policy)
					if !ok {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s:%d: skipping %s %s: dashboards are generated for kind Policy only\n",
							file, doc.Line, doc.Object.ObjectHeader().Kind, doc.Object.ObjectHeader().Key())
						continue
					}
					ds = append(ds, dashboards.ForPolicy(p, opts))
				}
			}
			if err := os.MkdirAll(outDir, 0o755); err != nil {
				return err
			}
			for _, d := range ds {
				data, err := d.JSON()
				if err != nil {
					return err
				}
				path := filepath.Join(outDir, d.UID+".json")
				if err := os.WriteFile(path, data, 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s)\n", path, d.Title)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&policyFiles, "policy", nil, "policy file to generate dashboards for (repeatable)")
	cmd.Flags().StringVar(&datasource, "datasource", dashboards.DefaultDatasource, "default Prometheus data source of the dashboards")
	cmd.Flags().StringVar(&outDir, "output-dir", ".", "directory to write the dashboards into")
	return cmd
}
