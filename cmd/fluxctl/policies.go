package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/policies"
)

func newApplyCmd(c *cli) *cobra.Command {
	var file, namespace, kubeContext string
	var force bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the policies in FILE on the agent, or as custom resources in a cluster",
		Long: `Create or update the policies in FILE.

With --kubeconfig (or KUBECONFIG set and neither --agent nor FLUXCTL_AGENT
given) they become Policy and TrafficPolicy custom resources, written with a
server-side apply (field manager fluxctl) into metadata.namespace, --namespace
or the kubeconfig context's namespace; the agents watching the cluster serve
them. A field another manager (kubectl, Argo CD, Flux) owns is a conflict,
reported with its owner; --force-conflicts takes it over. Otherwise they go
to the agent's admin API (--agent).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("apply needs -f FILE")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			docs, err := policies.Parse(file, data)
			if err != nil {
				return err // positioned: file:line:col: message
			}
			if len(docs) == 0 {
				return fmt.Errorf("%s holds no policy documents", file)
			}
			for _, d := range docs {
				for _, w := range d.Warnings { // what an Aperture policy holds that FluxGate ignores, as validate prints it
					fmt.Fprintln(cmd.ErrOrStderr(), w.Error())
				}
			}
			if cluster, kubeconfig := c.useCluster(cmd.Flags().Changed("agent")); cluster {
				return applyToCluster(cmd, kubeconfig, kubeContext, file, namespace, force, docs)
			}
			for _, d := range docs {
				key := d.Object.ObjectHeader().Key()
				// The document as written, so that the agent's positions are
				// the file's; the re-encoded form when it must change.
				src, before, ok := documentText(file, data, d)
				if namespace != "" && namespace != key.Namespace {
					if src, err = withNamespace(d.Source, namespace); err != nil {
						return fmt.Errorf("%s:%d: %w", file, d.Line, err)
					}
					key.Namespace = namespace
					ok = false
				}
				status, _, err := c.do(cmd.Context(), http.MethodPut, policyPath(key.Namespace, key.Name), src, "application/json", nil)
				if err != nil {
					var ae *apiError
					if ok && errors.As(err, &ae) {
						ae.Errors = filePositions(ae.Errors, file, before)
					}
					return fmt.Errorf("apply %s %s: %w", d.Object.ObjectHeader().Kind, key, err)
				}
				verb := "configured"
				if status == http.StatusCreated {
					verb = "created"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", d.Object.ObjectHeader().Kind, key, verb)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "policy file (- for stdin)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace to apply into (overrides metadata.namespace)")
	cmd.Flags().StringVar(&c.kubeconfig, "kubeconfig", "", "write custom resources to the cluster of this kubeconfig instead of the agent (KUBECONFIG too, unless --agent or FLUXCTL_AGENT is set)")
	cmd.Flags().StringVar(&kubeContext, "context", "", "kubeconfig context (default: the current one)")
	cmd.Flags().BoolVar(&force, "force-conflicts", false, "with a cluster: take over fields another field manager owns instead of failing")
	return cmd
}

// applyToCluster writes docs as custom resources. A document without
// metadata.namespace goes to the kubeconfig context's namespace.
func applyToCluster(cmd *cobra.Command, kubeconfig, kubeContext, file, namespace string, force bool, docs []*policies.Document) error {
	k, err := newClusterClient(kubeconfig, kubeContext)
	if err != nil {
		return err
	}
	for _, d := range docs {
		hdr := d.Object.ObjectHeader()
		ns := namespace
		switch {
		case ns != "":
		case hasNamespace(d.Source):
			ns = hdr.Metadata.Namespace
		default:
			ns = k.namespace
		}
		src, err := withNamespace(d.Source, ns)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, d.Line, err)
		}
		if d.Form == policies.FormAperture {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s:%d: an Aperture policy: written as its translation, a %s %s, which takes precedence over an Aperture Policy object of the same namespace/name (fluxgate policy convert %s prints it)\n",
				file, d.Line, policies.APIVersion, hdr.Kind, file)
		}
		created, err := k.apply(cmd.Context(), hdr.Kind, ns, hdr.Metadata.Name, src, force)
		if err != nil {
			return fmt.Errorf("%s:%d: apply %s %s/%s: %w", file, d.Line, hdr.Kind, ns, hdr.Metadata.Name, err)
		}
		verb := "configured"
		if created {
			verb = "created"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s/%s %s (cluster)\n", hdr.Kind, ns, hdr.Metadata.Name, verb)
	}
	return nil
}

// hasNamespace reports whether a YAML document sets metadata.namespace.
func hasNamespace(src []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(src, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return false
	}
	meta := mappingValue(doc.Content[0], "metadata")
	return meta != nil && mappingValue(meta, "namespace") != nil
}

// withNamespace rewrites metadata.namespace of one YAML document.
func withNamespace(src []byte, ns string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fmt.Errorf("not a YAML document")
	}
	meta := mappingValue(doc.Content[0], "metadata")
	if meta == nil {
		return nil, fmt.Errorf("document has no metadata")
	}
	if v := mappingValue(meta, "namespace"); v != nil {
		v.SetString(ns)
	} else {
		k, v := &yaml.Node{}, &yaml.Node{}
		k.SetString("namespace")
		v.SetString(ns)
		meta.Content = append(meta.Content, k, v)
	}
	return yaml.Marshal(&doc)
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func newGetCmd(c *cli) *cobra.Command {
	get := &cobra.Command{Use: "get", Short: "Show objects loaded on the agent"}
	get.AddCommand(&cobra.Command{
		Use:     "policies",
		Aliases: []string{"policy"},
		Short:   "List policies, or show one: get policy NAME [--namespace NS]",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, _ := cmd.Flags().GetString("namespace")
			if len(args) == 1 {
				return c.showPolicy(cmd, ns, args[0])
			}
			return c.listPolicies(cmd, ns)
		},
	})
	get.PersistentFlags().StringP("namespace", "n", "", "only this namespace (default for a single policy: default)")
	get.AddCommand(newControlPointsCmd(c))
	return get
}

func (c *cli) listPolicies(cmd *cobra.Command, ns string) error {
	var list api.PolicyList
	if _, _, err := c.do(cmd.Context(), http.MethodGet, "/v1/policies", nil, "application/json", &list); err != nil {
		return err
	}
	if ns != "" {
		kept := list.Policies[:0]
		for _, p := range list.Policies {
			if p.Namespace == ns {
				kept = append(kept, p)
			}
		}
		list.Policies = kept
	}
	out := cmd.OutOrStdout()
	if done, err := c.encode(out, list); done {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tKIND\tFILE\tAGE")
	for _, p := range list.Policies {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Kind, p.File, time.Since(p.LoadedAt).Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range list.Errors {
		fmt.Fprintln(cmd.ErrOrStderr(), "refused:", e)
	}
	return nil
}

func (c *cli) showPolicy(cmd *cobra.Command, ns, name string) error {
	if ns == "" {
		ns = "default"
	}
	out := cmd.OutOrStdout()
	if c.output == "json" {
		var pi api.PolicyInfo
		if _, _, err := c.do(cmd.Context(), http.MethodGet, policyPath(ns, name), nil, "application/json", &pi); err != nil {
			return err
		}
		_, err := c.encode(out, pi)
		return err
	}
	_, data, err := c.do(cmd.Context(), http.MethodGet, policyPath(ns, name), nil, "application/yaml", nil)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}

func newDeleteCmd(c *cli) *cobra.Command {
	del := &cobra.Command{Use: "delete", Short: "Delete objects from the agent"}
	var ns string
	p := &cobra.Command{
		Use:   "policy NAME",
		Short: "Delete a policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := c.do(cmd.Context(), http.MethodDelete, policyPath(ns, args[0]), nil, "application/json", nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy %s/%s deleted\n", ns, args[0])
			return nil
		},
	}
	p.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace of the policy")
	del.AddCommand(p)
	return del
}

// documentText returns the lines of data that hold the document d, from
// the "---" line before it (if any) up to the next, and how many lines
// of data come before them; ok is false when those lines do not parse as
// d alone (a "..." end marker, say), and the caller sends d.Source.
func documentText(file string, data []byte, d *policies.Document) (text []byte, before int, ok bool) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	start, end := 0, len(lines)
	for i, l := range lines {
		if !isDocumentStart(l) {
			continue
		}
		if i < d.Line { // a separator at or before the document's first line (0-based i, 1-based Line)
			start = i
		} else {
			end = i
			break
		}
	}
	text = bytes.Join(lines[start:end], nil)
	again, err := policies.Parse(file, text)
	if err != nil || len(again) != 1 || again[0].Object.ObjectHeader().Key() != d.Object.ObjectHeader().Key() {
		return d.Source, 0, false
	}
	return text, start, true
}

// isDocumentStart reports whether line is a YAML document marker: "---"
// alone or followed by white space.
func isDocumentStart(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	return ok && (len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\r' || rest[0] == '\n')
}

// agentPosition is a position the agent gives in the document it was sent.
var agentPosition = regexp.MustCompile(`^body:(\d+):(\d+):`)

// filePositions turns the agent's "body:L:C:" positions into the file's,
// the document having started after before lines of it.
func filePositions(errs []string, file string, before int) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		m := agentPosition.FindStringSubmatchIndex(e)
		if m == nil {
			out[i] = e
			continue
		}
		line, _ := strconv.Atoi(e[m[2]:m[3]])
		out[i] = fmt.Sprintf("%s:%d:%s:%s", file, line+before, e[m[4]:m[5]], e[m[1]:])
	}
	return out
}
