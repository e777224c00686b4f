package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with policy files",
	}
	cmd.AddCommand(newPolicyValidateCmd(), newPolicyGraphCmd(), newPolicyConvertCmd())
	return cmd
}

func newPolicyValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check policy files; print file:line:col: message for each problem",
		Long: "validate parses and checks every document of every FILE. It prints one\n" +
			"file:line:col: message line per problem on stderr and exits with status 1,\n" +
			"or prints a one-line summary on stdout when all files are valid.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return validatePolicyFiles(cmd, args)
		},
	}
}

func validatePolicyFiles(cmd *cobra.Command, files []string) error {
	// Whether an agent has Redis is the agent's configuration, not the
	// policy's: compile backend: redis limiters against a backend that is
	// never called (validation does not connect).
	unused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer func() { _ = unused.Close() }()
	rb, err := ratelimit.NewRedisBackend(ratelimit.RedisOptions{Client: unused})
	if err != nil {
		return err
	}
	engine, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1, Redis: rb})
	if err != nil {
		return err
	}
	problems, objects, aperture := 0, 0, 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", file, errors.Unwrap(err))
			problems++
			continue
		}
		docs, err := policies.Parse(file, data)
		var list strictyaml.ErrorList
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				fmt.Fprintln(cmd.ErrOrStderr(), e)
			}
			problems += len(list)
		case err != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", file, err)
			problems++
		}
		objects += len(docs)
		for _, d := range docs {
			if d.Form == policies.FormAperture {
				aperture++
			}
			for _, w := range d.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), w) // a warning: the file stays valid
			}
			for _, msg := range compileProblems(engine, file, d) {
				fmt.Fprintln(cmd.ErrOrStderr(), msg)
				problems++
			}
			if p, ok := d.Object.(*policies.Policy); ok {
				for _, w := range circuit.Lint(p) {
					w.File = file
					fmt.Fprintln(cmd.ErrOrStderr(), w) // a warning: the file stays valid
				}
			}
		}
	}
	if problems > 0 {
		return &exitError{code: 1, err: fmt.Errorf("policy validate: %s in %s",
			plural(problems, "problem"), plural(len(files), "file"))}
	}
	form := ""
	if aperture > 0 {
		form = fmt.Sprintf(" (%s)", plural(aperture, "Aperture policy"))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ok: %s, %s%s\n", plural(len(files), "file"), plural(objects, "policy"), form)
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if base, ok := strings.CutSuffix(noun, "policy"); ok {
		return fmt.Sprintf("%d %spolicies", n, base)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// compileProblems runs the checks the agent runs before it accepts a
// policy: the circuit must compile (wiring) and the decision engine must
// compile its parts (Rego classifiers, say).
func compileProblems(engine *controlpoint.Engine, file string, d *policies.Document) []string {
	p, ok := d.Object.(*policies.Policy)
	if !ok {
		return nil
	}
	var out []string
	_, err := circuit.Compile(p, circuit.Env{})
	var list strictyaml.ErrorList
	switch {
	case errors.As(err, &list):
		for _, e := range list {
			e.File = file
			out = append(out, e.Error())
		}
	case err != nil:
		out = append(out, fmt.Sprintf("%s:%d: %v", file, d.Line, err))
	}
	if err := engine.Validate(p); err != nil {
		out = append(out, fmt.Sprintf("%s:%d: %v", file, d.Line, err))
	}
	return out
}

func newPolicyGraphCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph FILE",
		Short: "Print the circuit of each policy in FILE as a Graphviz (dot) or Mermaid graph",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "dot" && format != "mermaid" {
				return fmt.Errorf("--format %q: want dot or mermaid", format)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			docs, err := policies.Parse(args[0], data)
			if err != nil {
				return err
			}
			for _, d := range docs {
				p, ok := d.Object.(*policies.Policy)
				if !ok {
					continue
				}
				dia := circuit.Describe(p)
				if format == "dot" {
					fmt.Fprint(cmd.OutOrStdout(), dia.DOT())
				} else {
					fmt.Fprint(cmd.OutOrStdout(), dia.Mermaid())
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "dot", "dot or mermaid")
	return cmd
}

func newPolicyConvertCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "convert FILE",
		Short: "Print the FluxGate-native form of the policies in FILE (Aperture policies translated)",
		Long: "convert reads every document of FILE as validate does and prints its\n" +
			"native form (apiVersion " + policies.APIVersion + "), documents separated by\n" +
			"---. An Aperture policy (apiVersion " + policies.ApertureAPIVersion + ")\n" +
			"is printed translated, its warnings on stderr; loading the output gives\n" +
			"the same policy. A file with problems prints them and nothing else.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			docs, err := policies.Parse(args[0], data)
			var list strictyaml.ErrorList
			switch {
			case errors.As(err, &list):
				for _, e := range list {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				return &exitError{code: 1, err: fmt.Errorf("policy convert: %s in %s", plural(len(list), "problem"), args[0])}
			case err != nil:
				return err
			}
			for i, d := range docs {
				for _, w := range d.Warnings {
					fmt.Fprintln(cmd.ErrOrStderr(), w)
				}
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "---")
				}
				if _, err := cmd.OutOrStdout().Write(d.Source); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
