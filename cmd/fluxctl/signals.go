package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/api"
)

func newSignalsCmd(c *cli) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "signals POLICY",
		Short: "Show the live signals of a policy's circuit, with validity and age",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp api.SignalsResponse
			if _, _, err := c.doJSON(cmd, http.MethodGet, "/v1/signals/"+policyPath(ns, args[0])[len("/v1/policies/"):], nil, &resp); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if done, err := c.encode(out, resp); done {
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SIGNAL\tVALUE\tVALID\tAGE\tPRODUCER\tREASON")
			for _, s := range resp.Signals {
				value, age := "-", "-"
				if s.Valid {
					value = fmt.Sprintf("%g", s.Value)
				}
				if !s.At.IsZero() {
					age = resp.At.Sub(s.At).Round(time.Millisecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", s.Name, value, s.Valid, age, s.Producer, s.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace of the policy")
	return cmd
}
