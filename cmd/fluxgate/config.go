package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate"
)

// newConfigFileMode is the mode of a config file that `config set` creates:
// the file may hold tokens (admin.token, check.token, otlp.token), so only
// its owner reads it.
const newConfigFileMode fs.FileMode = 0o600

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Read and edit the agent config file",
		Long: `Read and edit the agent config file (--config, default fluxgate.yaml).

The effective configuration is the defaults, overridden by the file,
overridden by FLUXGATE_<SECTION>_<KEY> environment variables.
"fluxgate config keys" lists every key.`,
	}
	cmd.AddCommand(newConfigSetCmd(), newConfigGetCmd(), newConfigViewCmd(), newConfigKeysCmd())
	return cmd
}

func newConfigSetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Set KEY to VALUE in the config file, keeping its comments",
		Long: `Set KEY to VALUE in the config file, keeping its comments, key order and
layout. The file is created if it does not exist. Unknown keys, values of the
wrong type and invalid values are refused and leave the file unchanged.`,
		Example: "  fluxgate config set metrics.port 9090",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, value := args[0], args[1]
			data, mode, err := readConfigFile(configPath)
			if err != nil {
				return err
			}
			out, err := fluxgate.SetFile(configPath, data, key, value)
			if err != nil {
				return err
			}
			if !bytes.Equal(out, data) {
				if err := writeFileAtomic(configPath, out, mode); err != nil {
					return err
				}
			}
			for _, k := range fluxgate.Keys() {
				if _, set := os.LookupEnv(k.Env); k.Key == key && set {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: %s is set in the environment and overrides %s\n", k.Env, key)
				}
			}
			return nil
		},
	}
	// A VALUE such as -1 reads as a flag ("unknown shorthand flag: '1' in
	// -1"); say how to pass it.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		if !strings.HasPrefix(err.Error(), "unknown shorthand flag") {
			return err
		}
		return fmt.Errorf("%w (a VALUE that starts with - goes after --: fluxgate config set KEY -- VALUE)", err)
	})
	return cmd
}

func newConfigGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Print the effective value of KEY (defaults, file, environment)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadEffectiveConfig(cmd)
			if err != nil {
				return err
			}
			v, err := fluxgate.Get(cfg, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	}
}

func newConfigViewCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "view",
		Short: "Print the effective configuration as YAML, every key included, secrets redacted",
		Long: `Print the effective configuration as YAML, every key included.

Secrets (admin.token, check.token, otlp.token, redis.password) are printed
as "<redacted: N chars>", so that the output can be pasted into an issue or
a chat; "fluxgate config get KEY" prints one of them when asked by name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadEffectiveConfig(cmd)
			if err != nil {
				return err
			}
			cfg = redactSecrets(cfg)
			enc := yaml.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent(2)
			if err := enc.Encode(cfg); err != nil {
				return fmt.Errorf("config view: %w", err)
			}
			return enc.Close()
		},
	}
}

// redactSecrets returns cfg with each secret that is set replaced by
// "<redacted: N chars>": its length tells a set token from a mistyped
// one, its bytes stay out of terminals and logs.
func redactSecrets(cfg fluxgate.File) fluxgate.File {
	for _, s := range []*string{&cfg.Admin.Token, &cfg.Check.Token, &cfg.OTLP.Token, &cfg.Redis.Password} {
		if *s != "" {
			*s = fmt.Sprintf("<redacted: %d chars>", len(*s))
		}
	}
	return cfg
}

func newConfigKeysCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keys",
		Short: "List every config key with its type, default and description",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tTYPE\tDEFAULT\tENV\tDESCRIPTION")
			for _, k := range fluxgate.Keys() {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.Key, k.Type, k.Default, k.Env, k.Desc)
			}
			return w.Flush()
		},
	}
}

// loadEffectiveConfig loads --config with the process environment and
// prints warnings to stderr.
func loadEffectiveConfig(cmd *cobra.Command) (fluxgate.File, error) {
	cfg, warnings, err := fluxgate.Load(configPath, os.Environ())
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	return cfg, err
}

// readConfigFile returns the file's content and mode; a missing file is
// empty with the mode a new one gets.
func readConfigFile(path string) ([]byte, fs.FileMode, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, newConfigFileMode, nil
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	return data, fi.Mode().Perm(), nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory and a rename, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	if target, lerr := filepath.EvalSymlinks(path); lerr == nil {
		path = target // replace the file a symlink points to, not the link
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // best effort: err is the one to report
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := io.Copy(f, bytes.NewReader(data)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
