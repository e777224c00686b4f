package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with policy files",
	}
	cmd.AddCommand(newPolicyValidateCmd())
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
	problems, objects := 0, 0
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
	}
	if problems > 0 {
		return &exitError{code: 1, err: fmt.Errorf("policy validate: %s in %s",
			plural(problems, "problem"), plural(len(files), "file"))}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ok: %s, %s\n", plural(len(files), "file"), plural(objects, "policy"))
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if noun == "policy" {
		return fmt.Sprintf("%d policies", n)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
