package blueprints

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/template"

	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

//go:embed templates/*.yaml.tmpl values/*.yaml
var files embed.FS

// Blueprint is a named, parameterised policy.
type Blueprint struct {
	Name    string // as in `fluxgate blueprints generate NAME`
	Summary string // one line

	// decode reads a values file strictly and checks it; errors are a
	// strictyaml.ErrorList positioned in the values file.
	decode func(file string, data []byte) (spec, error)
}

// spec is a blueprint's decoded, checked values: what it takes to render
// the policy and derive rules and dashboard panels from it.
type spec interface {
	// policyName is metadata.name of the generated policy.
	policyName() string
	// template names the file under templates/ rendered with the spec as
	// its data.
	template() string
	// rules are the Prometheus rule groups for the checked policy.
	rules(p *policies.Policy) []rulefmt.RuleGroup
	// panels are dashboard panels beyond one per signal and flux meter.
	panels(p *policies.Policy) []panel
}

// ruleTester is a spec that also writes a `promtool test rules` file for
// its rules file.
type ruleTester interface {
	rulesTest(rulesFile string) ([]byte, error)
}

// checkedSpec is a spec whose values check themselves.
type checkedSpec interface {
	spec
	check(c *checker)
}

// decoder returns a Blueprint.decode that starts from defaults(), reads
// the values file over them strictly and checks the result.
func decoder[V checkedSpec](defaults func() V) func(file string, data []byte) (spec, error) {
	return func(file string, data []byte) (spec, error) {
		v := defaults()
		if err := decodeValues(file, data, v, v.check); err != nil {
			return nil, err
		}
		return v, nil
	}
}

var registry = map[string]*Blueprint{}

// register makes a blueprint known; it is called from init functions and
// panics on a duplicate name or a missing values file (programmer errors).
func register(b *Blueprint) {
	if _, dup := registry[b.Name]; dup {
		panic("blueprints: duplicate blueprint " + b.Name)
	}
	if _, err := files.ReadFile("values/" + b.Name + ".yaml"); err != nil {
		panic("blueprints: no values file for " + b.Name)
	}
	registry[b.Name] = b
}

// List returns every blueprint, sorted by name.
func List() []*Blueprint {
	out := make([]*Blueprint, 0, len(registry))
	for _, b := range registry {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the blueprint called name.
func Lookup(name string) (*Blueprint, error) {
	if b, ok := registry[name]; ok {
		return b, nil
	}
	var names []string
	for _, b := range List() {
		names = append(names, b.Name)
	}
	return nil, fmt.Errorf("blueprints: no blueprint %q; have %s", name, strings.Join(names, ", "))
}

// Values returns the blueprint's commented example values file: every
// parameter with its type, default and description, filled with values
// that Generate turns into a working policy.
func (b *Blueprint) Values() []byte {
	data, _ := files.ReadFile("values/" + b.Name + ".yaml") // checked by register
	return data
}

// File is one generated file.
type File struct {
	Name string // base name
	Data []byte
}

// Output is what Generate produces.
type Output struct {
	Policy *policies.Policy // the checked policy
	Files  []File           // sorted by name
}

// Generate decodes values (read from file, for error positions), renders
// the policy and checks it as the agent would, and derives the rules,
// dashboard and circuit graphs. Bad values are a strictyaml.ErrorList
// positioned in the values file; a rendered policy that fails its checks
// (values the blueprint could not catch, such as a bad selector) is an
// error quoting the policy's own positions.
func (b *Blueprint) Generate(file string, values []byte) (*Output, error) {
	s, err := b.decode(file, values)
	if err != nil {
		return nil, err
	}
	name := s.policyName()
	policyFile := name + ".yaml"
	src, err := render(s.template(), s)
	if err != nil {
		return nil, err
	}
	p, err := check(policyFile, src)
	if err != nil {
		return nil, fmt.Errorf("blueprints: %s: the policy generated from %s is invalid:\n%w", b.Name, file, err)
	}
	groups := s.rules(p)
	rules, err := marshalRules(groups)
	if err != nil {
		return nil, fmt.Errorf("blueprints: %s: generated rules: %w", b.Name, err)
	}
	dash, err := dashboard(b, p, s.panels(p))
	if err != nil {
		return nil, err
	}
	dia := circuit.Describe(p)
	out := &Output{Policy: p, Files: []File{
		{Name: policyFile, Data: src},
		{Name: name + ".rules.yaml", Data: rules},
		{Name: name + ".dashboard.json", Data: dash},
		{Name: name + ".dot", Data: []byte(dia.DOT())},
		{Name: name + ".mmd", Data: []byte(dia.Mermaid())},
	}}
	if rt, ok := s.(ruleTester); ok {
		data, err := rt.rulesTest(name + ".rules.yaml")
		if err != nil {
			return nil, fmt.Errorf("blueprints: %s: rules test: %w", b.Name, err)
		}
		out.Files = append(out.Files, File{Name: name + ".rules_test.yaml", Data: data})
	}
	slices.SortFunc(out.Files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// WriteDir writes every file into dir, creating it if needed.
func (o *Output) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range o.Files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// render executes templates/NAME with data.
func render(name string, data any) ([]byte, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").ParseFS(files, "templates/"+name)
	if err != nil {
		return nil, fmt.Errorf("blueprints: template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("blueprints: template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// check runs the checks `fluxgate policy validate` runs on one policy
// file: strict decoding and validation (policies.Parse), circuit
// compilation, and compilation by the decision engine. It returns the one
// Policy the file holds.
func check(file string, src []byte) (*policies.Policy, error) {
	docs, err := policies.Parse(file, src)
	if err != nil {
		return nil, err
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("%s: want one policy, got %d documents", file, len(docs))
	}
	p, ok := docs[0].Object.(*policies.Policy)
	if !ok {
		return nil, fmt.Errorf("%s: want a Policy, got %T", file, docs[0].Object)
	}
	var errs []error
	if _, err := circuit.Compile(p, circuit.Env{}); err != nil {
		var list strictyaml.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				e.File = file
			}
		}
		errs = append(errs, err)
	}
	engine, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		return nil, err
	}
	if err := engine.Validate(withLocalBackends(p)); err != nil {
		errs = append(errs, fmt.Errorf("%s:%d: %w", file, docs[0].Line, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// withLocalBackends returns p, or a copy whose redis rate limiters keep
// their buckets locally. The engine refuses a redis limiter when the agent
// it runs in has no Redis configured; generating a policy says nothing
// about the agent that will load it, so that refusal is not a problem of
// the policy. Everything else about the limiter is still compiled.
func withLocalBackends(p *policies.Policy) *policies.Policy {
	cp := *p
	cp.Spec.Circuit.Components = slices.Clone(p.Spec.Circuit.Components)
	for i, c := range cp.Spec.Circuit.Components {
		if rl, ok := c.Spec.(*policies.RateLimiter); ok && rl.Parameters.Backend == policies.BackendRedis {
			local := *rl
			local.Parameters = policies.RateLimiterParameters{
				LimitByLabelKey:  rl.Parameters.LimitByLabelKey,
				Interval:         rl.Parameters.Interval,
				ContinuousFill:   rl.Parameters.ContinuousFill,
				MaxIdleTime:      rl.Parameters.MaxIdleTime,
				DelayInitialFill: rl.Parameters.DelayInitialFill,
			}
			comp := *c
			comp.Spec = &local
			cp.Spec.Circuit.Components[i] = &comp
		}
	}
	return &cp
}
