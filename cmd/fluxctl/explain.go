package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/api"
)

func newExplainCmd(c *cli) *cobra.Command {
	var cp string
	var labels []string
	var tokens float64
	cmd := &cobra.Command{
		Use:   "explain --control-point CP [--label k=v]...",
		Short: "Show which classifiers, flux meters and limiters a flow meets and what each would decide (takes no tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cp == "" {
				return fmt.Errorf("explain needs --control-point")
			}
			req := api.ExplainRequest{ControlPoint: cp, Labels: map[string]string{}, Tokens: tokens}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				req.Labels[k] = v
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			var x api.Explanation
			if _, _, err := c.doJSON(cmd, http.MethodPost, "/v1/explain", body, &x); err != nil {
				return err
			}
			return c.printExplanation(cmd.OutOrStdout(), &x)
		},
	}
	cmd.Flags().StringVar(&cp, "control-point", "", "control point of the flow (required)")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "flow label key=value (repeatable)")
	cmd.Flags().Float64Var(&tokens, "tokens", 1, "cost of the flow in tokens")
	return cmd
}

func (c *cli) printExplanation(out io.Writer, x *api.Explanation) error {
	if done, err := c.encode(out, x); done {
		return err
	}
	verdict := "ACCEPTED"
	if !x.Accepted {
		verdict = "REJECTED (" + x.Reason + ")"
	}
	fmt.Fprintf(out, "control point %s: %s\n", x.ControlPoint, verdict)
	if x.NoPolicy {
		fmt.Fprintln(out, "no policy applies at this control point")
		return nil
	}
	keys := make([]string, 0, len(x.Labels))
	for k := range x.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(out, "\nlabels:")
	for _, k := range keys {
		fmt.Fprintf(out, "  %s=%s\n", k, x.Labels[k])
	}
	if len(x.Classifiers) > 0 {
		fmt.Fprintln(out, "\nclassifiers:")
		for _, cl := range x.Classifiers {
			state := "skipped"
			if cl.Matched {
				state = fmt.Sprintf("added %v", cl.Labels)
			}
			if cl.Error != "" {
				state += " error: " + cl.Error
			}
			fmt.Fprintf(out, "  %s #%d: %s\n", cl.Policy, cl.Index, state)
		}
	}
	if len(x.FluxMeters) > 0 {
		fmt.Fprintf(out, "\nflux meters: %s\n", strings.Join(x.FluxMeters, ", "))
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tCOMPONENT\tTYPE\tMATCHED\tWOULD\tREMAINING\tLIMIT\tKEY")
	for _, co := range x.Components {
		would := "accept"
		switch {
		case !co.Matched:
			would = "-"
		case co.Unreached:
			would = "not reached"
		case co.PassThrough:
			would = "pass through (no valid input)"
		case co.WouldReject && co.DryRun:
			would = "reject (dry run: counted only)"
		case co.WouldReject:
			would = "reject: " + co.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%g\t%g\t%s\n", co.Policy, co.ComponentID, co.ComponentType, co.Matched, would, co.Remaining, co.Limit, co.LimitKey)
	}
	return tw.Flush()
}

func newControlPointsCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "controlpoints",
		Short: "List the control points flows arrived at, with their label keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp api.ControlPointList
			if _, _, err := c.doJSON(cmd, http.MethodGet, "/v1/controlpoints", nil, &resp); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if done, err := c.encode(out, resp); done {
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CONTROL POINT\tCHECKS\tLABEL KEYS")
			for _, p := range resp.ControlPoints {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Name, p.Checks, strings.Join(p.LabelKeys, ","))
			}
			return tw.Flush()
		},
	}
}
