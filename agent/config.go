package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Config is the content of fluxgate.yaml. Every key has a default (see
// DefaultConfig); a file overrides the defaults and FLUXGATE_<SECTION>_<KEY>
// environment variables override the file (see LoadConfig).
//
// Everything that lists, edits, overrides or validates keys walks this type
// by reflection, so a new section or key is one struct field with a yaml
// name, a one-line desc tag and, where it applies, a validate tag:
//
//	validate:"port"                      0..65535 (0 picks a free port)
//	validate:"nonempty"                  a non-empty string
//	validate:"urlpath"                   a string starting with "/"
//	validate:"positive"                  a duration above zero
//	validate:"oneof=debug|info|warn"     one of the listed values
//
// Several rules are separated by commas.
type Config struct {
	Server     ServerConfig     `yaml:"server"`
	Metrics    MetricsConfig    `yaml:"metrics"`
	OTLP       OTLPConfig       `yaml:"otlp"`
	Policies   PoliciesConfig   `yaml:"policies"`
	Admin      AdminConfig      `yaml:"admin"`
	Log        LogConfig        `yaml:"log"`
	Agent      AgentConfig      `yaml:"agent"`
	TSDB       TSDBConfig       `yaml:"tsdb"`
	Prometheus PrometheusConfig `yaml:"prometheus"`
}

// ServerConfig is where the HTTP API and the gRPC services listen.
type ServerConfig struct {
	Host     string `yaml:"host" desc:"Address the HTTP API and gRPC servers bind to."`
	HTTPPort int    `yaml:"http_port" validate:"port" desc:"Port of the HTTP API (check, explain, policies, health)."`
	GRPCPort int    `yaml:"grpc_port" validate:"port" desc:"Port of the gRPC services (flow control Check, Envoy ext_authz, health)."`
}

// MetricsConfig is the Prometheus scrape endpoint.
type MetricsConfig struct {
	Enabled bool   `yaml:"enabled" desc:"Serve Prometheus metrics on their own port."`
	Port    int    `yaml:"port" validate:"port" desc:"Port of the metrics endpoint."`
	Path    string `yaml:"path" validate:"urlpath" desc:"URL path of the metrics endpoint (Prometheus text or OpenMetrics by Accept)."`
}

// OTLPConfig is where the OpenTelemetry trace receiver listens.
type OTLPConfig struct {
	GRPCPort int `yaml:"grpc_port" validate:"port" desc:"Port of the OTLP trace receiver over gRPC."`
	HTTPPort int `yaml:"http_port" validate:"port" desc:"Port of the OTLP trace receiver over HTTP (/v1/traces)."`
}

// PoliciesConfig is where policy files are loaded from.
type PoliciesConfig struct {
	Dir string `yaml:"dir" validate:"nonempty" desc:"Directory of policy files, loaded at start and reloaded on change."`
}

// AdminConfig protects the admin endpoints.
type AdminConfig struct {
	Token string `yaml:"token" desc:"Bearer token required by admin endpoints; empty disables them."`
}

// LogConfig is the agent's structured log.
type LogConfig struct {
	Level  string `yaml:"level" validate:"oneof=debug|info|warn|error" desc:"Minimum log level."`
	Format string `yaml:"format" validate:"oneof=json|text" desc:"Log line format."`
}

// AgentConfig identifies this agent to policies.
type AgentConfig struct {
	AgentGroup string `yaml:"agent_group" validate:"nonempty" desc:"Agent group that policy selectors match with agent_group."`
}

// DefaultConfig returns the configuration used for every key that neither
// the file nor the environment sets.
func DefaultConfig() Config {
	return Config{
		Server:     ServerConfig{Host: "0.0.0.0", HTTPPort: 8080, GRPCPort: 8081},
		Metrics:    MetricsConfig{Enabled: true, Port: 9090, Path: "/metrics"},
		OTLP:       OTLPConfig{GRPCPort: 4317, HTTPPort: 4318},
		Policies:   PoliciesConfig{Dir: "./policies"},
		Log:        LogConfig{Level: "info", Format: "json"},
		Agent:      AgentConfig{AgentGroup: "default"},
		TSDB:       TSDBConfig{ScrapeInterval: time.Second, Retention: 2 * time.Hour},
		Prometheus: PrometheusConfig{Timeout: 5 * time.Second},
	}
}

// EnvPrefix starts every environment variable that LoadConfig reads.
const EnvPrefix = "FLUXGATE_"

// envDebug set to true forces log.level to debug.
const envDebug = EnvPrefix + "DEBUG"

// LoadConfig returns the effective configuration: DefaultConfig, overridden
// by the file at path, overridden by FLUXGATE_* variables in environ (in
// os.Environ form), then validated.
//
// A missing file means defaults only; an unreadable one is an error. The
// file is decoded strictly (package strictyaml): unknown keys, duplicate keys
// and values of the wrong type are all reported at once as
// "file:line:col: message", in a strictyaml.ErrorList. An environment variable
// whose value does not parse is an error naming it; a FLUXGATE_* variable
// that names no key is returned as a warning.
func LoadConfig(path string, environ []string) (Config, []string, error) {
	cfg := DefaultConfig()
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Config{}, nil, fmt.Errorf("agent: read config: %w", err)
	default:
		if err := decodeConfig(path, data, &cfg); err != nil {
			return Config{}, nil, err
		}
	}
	warnings, err := applyEnv(&cfg, environ)
	if err != nil {
		return Config{}, warnings, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, warnings, err
	}
	return cfg, warnings, nil
}

// applyEnv overrides cfg with FLUXGATE_<SECTION>_<KEY> variables. It reports
// every bad value at once.
func applyEnv(cfg *Config, environ []string) ([]string, error) {
	byEnv := make(map[string]configField)
	for _, f := range configFields() {
		byEnv[f.env] = f
	}
	var (
		warnings []string
		errs     []error
		debug    bool
	)
	root := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if name == envDebug {
			b, err := strconv.ParseBool(value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: expected bool, got %q", name, value))
				continue
			}
			debug = b
			continue
		}
		f, ok := byEnv[name]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("ignoring %s: no config key has this variable", name))
			continue
		}
		if !f.scalar() {
			errs = append(errs, fmt.Errorf("%s: %s is a %s and cannot be set from the environment", name, f.key, f.typeName()))
			continue
		}
		v, err := parseScalar(f.typ, value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		root.FieldByIndex(f.index).Set(v)
	}
	if debug {
		cfg.Log.Level = "debug"
	}
	return warnings, errors.Join(errs...)
}

// Validate reports every invalid value at once, each naming its key, e.g.
// "metrics.port: must be 0..65535, got 70000".
func (c *Config) Validate() error {
	root := reflect.ValueOf(c).Elem()
	var errs []error
	for _, f := range configFields() {
		errs = append(errs, f.validate(root.FieldByIndex(f.index))...)
	}
	return errors.Join(errs...)
}

// validate checks one value of f against f's validate tag.
func (f configField) validate(v reflect.Value) []error {
	if f.rules == "" {
		return nil
	}
	var errs []error
	for _, rule := range strings.Split(f.rules, ",") {
		name, arg, _ := strings.Cut(rule, "=")
		switch name {
		case "port":
			if p := v.Int(); p < 0 || p > 65535 {
				errs = append(errs, fmt.Errorf("%s: must be 0..65535, got %d", f.key, p))
			}
		case "nonempty":
			if v.String() == "" {
				errs = append(errs, fmt.Errorf("%s: must not be empty", f.key))
			}
		case "positive":
			if v.Int() <= 0 {
				errs = append(errs, fmt.Errorf("%s: must be positive, got %v", f.key, time.Duration(v.Int())))
			}
		case "urlpath":
			if !strings.HasPrefix(v.String(), "/") {
				errs = append(errs, fmt.Errorf("%s: must start with \"/\", got %q", f.key, v.String()))
			}
		case "oneof":
			allowed := strings.Split(arg, "|")
			if !contains(allowed, v.String()) {
				errs = append(errs, fmt.Errorf("%s: must be one of %s, got %q", f.key, strings.Join(allowed, ", "), v.String()))
			}
		default:
			// A programming error in a struct tag: make it loud in tests
			// without panicking on a user's machine.
			errs = append(errs, fmt.Errorf("%s: unknown validate rule %q", f.key, name))
		}
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeConfig decodes data onto cfg, which holds the defaults: keys absent
// from the file keep their value. The error is a strictyaml.ErrorList with
// every problem and its position.
//
// A problem with a value is prefixed with the value's dotted key
// ("metrics.port: expected int, got string \"abc\""), which strictyaml does
// not know.
func decodeConfig(file string, data []byte, cfg *Config) error {
	err := strictyaml.Unmarshal(file, data, cfg)
	var list strictyaml.ErrorList
	if !errors.As(err, &list) {
		return err
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return err
	}
	keys := make(map[[2]int]string)
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := joinKey(prefix, n.Content[i].Value), n.Content[i+1]
			if _, seen := keys[[2]int{val.Line, val.Column}]; !seen {
				keys[[2]int{val.Line, val.Column}] = key
			}
			walk(val, key)
		}
	}
	walk(doc.Content[0], "")
	for _, e := range list {
		// A block mapping starts where its first key does: errors about
		// that key name the field themselves.
		if strings.HasPrefix(e.Msg, "unknown field ") || strings.HasPrefix(e.Msg, "duplicate key ") {
			continue
		}
		if key, ok := keys[[2]int{e.Line, e.Column}]; ok {
			e.Msg = key + ": " + e.Msg
		}
	}
	return list
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported node"
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
