package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/circuit/sim"
	"github.com/fluxgate/fluxgate/policies"
)

func newSimCmd() *cobra.Command {
	var inputs, plant, output, name string
	cmd := &cobra.Command{
		Use:   "sim FILE (--inputs signals.csv | --plant service.yaml)",
		Short: "Run a policy's circuit deterministically against recorded signals or a plant model",
		Long: "sim runs the circuit of the policy in FILE tick by tick, without an agent. Its\n" +
			"query.promql outputs come from --inputs (CSV: a header of signal names, one row per\n" +
			"tick) or from --plant (a service model: capacity, base_latency, load profile, and\n" +
			"which plant output feeds which signal), played flow by flow: clients that give up,\n" +
			"the load schedulers' queues, latency measured from admission when flows end, queries\n" +
			"over scraped counters. It prints every signal, every actuator input and, with a plant,\n" +
			"the plant's state and goodput, one row per tick.\n\n" +
			"A policy with a flow_control.adaptive_concurrency component (the service-protection\n" +
			"blueprint's default loop) is simulated request by request instead: the limiter the\n" +
			"engine builds, in front of capacity × base_latency workers behind a FIFO queue, with\n" +
			"the limiter's state and the plant's throughput, goodput and latency each second.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (inputs == "") == (plant == "") {
				return fmt.Errorf("sim needs exactly one of --inputs and --plant")
			}
			if output != "table" && output != "csv" {
				return fmt.Errorf("-o %q: want table or csv", output)
			}
			pol, err := loadPolicy(args[0], name)
			if err != nil {
				return err
			}
			var tab *sim.Table
			if inputs != "" {
				f, err := os.Open(inputs)
				if err != nil {
					return err
				}
				defer func() { _ = f.Close() }()
				rows, err := sim.ReadInputs(f)
				if err != nil {
					return err
				}
				tab, err = sim.Recorded(pol, rows)
				if err != nil {
					return err
				}
			} else {
				data, err := os.ReadFile(plant)
				if err != nil {
					return err
				}
				p, err := sim.ParsePlant(plant, data)
				if err != nil {
					return err
				}
				ac, err := adaptiveComponent(pol)
				if err != nil {
					return err
				}
				if ac != nil {
					tab, err = simulateInPath(ac, p)
				} else {
					tab, err = sim.Closed(pol, p)
				}
				if err != nil {
					return err
				}
			}
			if output == "csv" {
				return tab.WriteCSV(cmd.OutOrStdout())
			}
			return tab.WriteTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&inputs, "inputs", "", "CSV of recorded input signals")
	cmd.Flags().StringVar(&plant, "plant", "", "plant model YAML")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or csv")
	cmd.Flags().StringVar(&name, "policy", "", "the policy to run when FILE holds several")
	return cmd
}

// loadPolicy reads the one Policy of file, or the one named name.
func loadPolicy(file, name string) (*policies.Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	docs, err := policies.Parse(file, data)
	if err != nil {
		return nil, err
	}
	var found []*policies.Policy
	for _, d := range docs {
		if p, ok := d.Object.(*policies.Policy); ok && (name == "" || p.Metadata.Name == name) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) == 0:
		return nil, fmt.Errorf("%s: no Policy%s", file, map[bool]string{true: " named " + name, false: ""}[name != ""])
	}
	return nil, fmt.Errorf("%s holds %d policies; pick one with --policy", file, len(found))
}
