package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Schema is how files of root type T load: its defaults, its environment
// variables and the rules across keys. Build one with New and keep it; the
// zero value is not usable.
type Schema[T any] struct {
	opts   Options[T]
	fields func() []Field
}

// Options describes a root type to New.
type Options[T any] struct {
	// Name prefixes errors ("agent: read config: …"). Empty means "config".
	Name string
	// Defaults returns the value of every key neither the file nor the
	// environment sets. Nil means T's zero value.
	Defaults func() T
	// EnvPrefix starts every environment variable, e.g. "FLUXGATE_"; a
	// key a.b is read from EnvPrefix + "A_B". Empty means no variables.
	EnvPrefix string
	// EnvFlags are boolean variables that name no key (e.g.
	// FLUXGATE_DEBUG): when one is true its function runs after every
	// key variable was applied.
	EnvFlags map[string]func(*T)
	// Check reports the rules across keys that validate tags cannot say;
	// it runs after the tags' rules. Nil means none.
	Check func(*T) error
}

// New returns the schema of T, which must be a struct type.
func New[T any](opts Options[T]) *Schema[T] {
	if opts.Name == "" {
		opts.Name = "config"
	}
	s := &Schema[T]{opts: opts}
	s.fields = sync.OnceValue(func() []Field { return walkFields(reflect.TypeFor[T](), opts.EnvPrefix) })
	return s
}

func (s *Schema[T]) defaults() T {
	if s.opts.Defaults == nil {
		var zero T
		return zero
	}
	return s.opts.Defaults()
}

// Load returns the effective configuration: Defaults, overridden by the
// file at path, overridden by the variables in environ (in os.Environ
// form), then validated.
//
// A missing file means defaults only; an unreadable one is an error. The
// file is decoded strictly (package strictyaml): unknown keys, duplicate
// keys and values of the wrong type are all reported at once as
// "file:line:col: message", in a strictyaml.ErrorList. An environment
// variable whose value does not parse is an error naming it; a variable
// with EnvPrefix that names no key is returned as a warning.
func (s *Schema[T]) Load(path string, environ []string) (T, []string, error) {
	var zero T
	cfg := s.defaults()
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return zero, nil, fmt.Errorf("%s: read config: %w", s.opts.Name, err)
	default:
		if err := s.Decode(path, data, &cfg); err != nil {
			return zero, nil, err
		}
	}
	warnings, err := s.ApplyEnv(&cfg, environ)
	if err != nil {
		return zero, warnings, err
	}
	if err := s.Validate(&cfg); err != nil {
		return zero, warnings, err
	}
	return cfg, warnings, nil
}

// ApplyEnv overrides cfg with EnvPrefix variables from environ. It
// reports every bad value at once.
func (s *Schema[T]) ApplyEnv(cfg *T, environ []string) ([]string, error) {
	if s.opts.EnvPrefix == "" {
		return nil, nil
	}
	byEnv := make(map[string]Field)
	for _, f := range s.fields() {
		byEnv[f.Env] = f
	}
	var (
		warnings []string
		errs     []error
		flags    = make(map[string]bool)
	)
	root := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, s.opts.EnvPrefix) {
			continue
		}
		if _, ok := s.opts.EnvFlags[name]; ok {
			b, err := strconv.ParseBool(value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: expected bool, got %q", name, value))
				continue
			}
			flags[name] = b
			continue
		}
		f, ok := byEnv[name]
		if !ok {
			warnings = append(warnings, fmt.Sprintf("ignoring %s: no config key has this variable", name))
			continue
		}
		if !f.scalar() {
			errs = append(errs, fmt.Errorf("%s: %s is a %s and cannot be set from the environment", name, f.Key, f.TypeName()))
			continue
		}
		v, err := parseScalar(f.Type, value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		root.FieldByIndex(f.Index).Set(v)
	}
	for name, apply := range s.opts.EnvFlags {
		if flags[name] {
			apply(cfg)
		}
	}
	return warnings, errors.Join(errs...)
}

// Validate reports every invalid value at once, each naming its key, e.g.
// "metrics.port: must be 0..65535, got 70000": first the validate tags'
// rules, then Check's.
func (s *Schema[T]) Validate(cfg *T) error {
	root := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, f := range s.fields() {
		errs = append(errs, f.validate(root.FieldByIndex(f.Index))...)
	}
	if s.opts.Check != nil {
		errs = append(errs, s.opts.Check(cfg))
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeFor[time.Duration]()

// validate checks one value of f against f's validate tag.
func (f Field) validate(v reflect.Value) []error {
	if f.Rules == "" {
		return nil
	}
	var errs []error
	for _, rule := range strings.Split(f.Rules, ",") {
		name, arg, _ := strings.Cut(rule, "=")
		switch name {
		case "port":
			if p := v.Int(); p < 0 || p > 65535 {
				errs = append(errs, fmt.Errorf("%s: must be 0..65535, got %d", f.Key, p))
			}
		case "nonempty":
			if v.String() == "" {
				errs = append(errs, fmt.Errorf("%s: must not be empty", f.Key))
			}
		case "positive":
			if v.Int() <= 0 && v.Type() == durationType {
				errs = append(errs, fmt.Errorf("%s: must be positive, got %v", f.Key, time.Duration(v.Int())))
			} else if v.Int() <= 0 {
				errs = append(errs, fmt.Errorf("%s: must be positive, got %d", f.Key, v.Int()))
			}
		case "urlpath":
			if !strings.HasPrefix(v.String(), "/") {
				errs = append(errs, fmt.Errorf("%s: must start with \"/\", got %q", f.Key, v.String()))
			}
		case "oneof":
			allowed := strings.Split(arg, "|")
			if !contains(allowed, v.String()) {
				errs = append(errs, fmt.Errorf("%s: must be one of %s, got %q", f.Key, strings.Join(allowed, ", "), v.String()))
			}
		default:
			// A programming error in a struct tag: make it loud in tests
			// without panicking on a user's machine.
			errs = append(errs, fmt.Errorf("%s: unknown validate rule %q", f.Key, name))
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

// Decode decodes data onto cfg, which holds the defaults: keys absent
// from the file keep their value. The error is a strictyaml.ErrorList with
// every problem and its position.
//
// A problem with a value is prefixed with the value's dotted key
// ("metrics.port: expected int, got string \"abc\""), which strictyaml does
// not know.
func (s *Schema[T]) Decode(file string, data []byte, cfg *T) error {
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
