// Package fluxgate is the program's composition root: it joins the agent
// and the gateway where both run. It holds the root type of fluxgate.yaml
// (File) and how that file loads, lists and edits its keys; the one
// watcher of the file (Watcher), which loads it once per change and hands
// the agent and the gateway their sections; the adapters that join the
// gateway to the agent (GatewayHost: its actuator kinds, compiled
// TrafficPolicies, discovered targets); and Run, which starts and stops
// every long-lived part. Package agent knows only its own sections and
// package gateway only its gateway section; neither imports the other
// (TestImportGraph guards it). The program (cmd/fluxgate) and tests that
// run both start from here.
//
// Every long-lived part (the agent, the gateway, the watcher) is a Runner,
// Run(ctx) error, and Run composes them as Prometheus's main composes its
// run group: one goroutine per part, the first to end stops the rest, and
// every error comes back. It is the only mechanism: the fx modules that
// started the agent and the gateway through lifecycle hooks were removed,
// because a part that fails while running had to reach fx through a
// Shutdowner next to the hooks (two mechanisms), and start order, which
// fx expresses by module order, is here a Starter's Started channel: the
// gateway starts once the agent serves its policies, and stops before it.
//
// The functions are safe for concurrent use.
package fluxgate

import (
	"errors"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/config"
	"github.com/fluxgate/fluxgate/gateway"
)

// File is the content of fluxgate.yaml: the agent's sections and the
// gateway's, side by side at the top level. Every key has a default (see
// DefaultFile); the file overrides the defaults and FLUXGATE_<SECTION>_<KEY>
// environment variables override the file (see Load).
type File struct {
	agent.Config `yaml:",inline"`
	Gateway      gateway.Config `yaml:"gateway"`
}

// DefaultFile returns the configuration used for every key that neither
// the file nor the environment sets.
func DefaultFile() File {
	return File{Config: agent.DefaultConfig(), Gateway: gateway.DefaultConfig()}
}

// schema loads, validates and edits fluxgate.yaml (package config).
var schema = config.New(config.Options[File]{
	Name:      "agent",
	Defaults:  DefaultFile,
	EnvPrefix: agent.EnvPrefix,
	EnvFlags:  map[string]func(*File){agent.EnvPrefix + "DEBUG": func(f *File) { f.Log.Level = "debug" }},
	Check:     func(f *File) error { return errors.Join(f.Gateway.Validate(), f.Config.CrossCheck()) },
})

// Load returns the effective configuration: DefaultFile, overridden by the
// file at path, overridden by FLUXGATE_* variables in environ (in
// os.Environ form), then validated; see agent.LoadConfig for the errors
// and warnings, which are the same here for the whole file.
func Load(path string, environ []string) (File, []string, error) {
	return schema.Load(path, environ)
}

// Validate reports every invalid value of f at once, each naming its key.
func (f *File) Validate() error { return schema.Validate(f) }

// Keys lists every key of File in struct order: the agent's sections,
// then the gateway's.
func Keys() []config.Key { return schema.Keys() }

// Get returns the value of key in f as it would be written in YAML,
// without quotes for strings; lists and maps are in YAML flow style.
func Get(f File, key string) (string, error) { return schema.Get(f, key) }

// Set returns data, a fluxgate.yaml document, with key set to value,
// keeping comments, key order and the rest of the text; the edited
// document must load (Load, environment aside). See config.Schema.Set.
func Set(data []byte, key, value string) ([]byte, error) { return schema.Set(data, key, value) }

// SetFile is Set for the content of file, whose name positions the errors
// (file:line:col) the edited document would load with.
func SetFile(file string, data []byte, key, value string) ([]byte, error) {
	return schema.SetFile(file, data, key, value)
}

// Reference renders Keys as the markdown table of docs/configuration.md's
// configuration reference.
func Reference() string { return schema.Reference() }
