package circuit

import (
	"fmt"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("variable", func() Spec { return &Variable{} })
	Register("bool_variable", func() Spec { return &BoolVariable{} })
}

// Variable outputs a number that can change at run time: the value of
// config_key in the policy's dynamic config (PUT
// /v1/dynamic-config/{namespace}/{name}) when set, else constant_output.
// A dynamic value that is not a number makes the output invalid.
type Variable struct {
	ConstantOutput *policies.ConstantSignal `yaml:"constant_output,omitempty"`
	ConfigKey      string                   `yaml:"config_key,omitempty"`
	OutPorts       struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Variable) Validate() []error {
	if s.ConstantOutput == nil && s.ConfigKey == "" {
		return []error{fmt.Errorf("set constant_output, config_key or both")}
	}
	return nil
}

// Ports implements Spec.
func (s *Variable) Ports() ([]InPort, []OutPort) {
	return nil, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Variable) Build(env *Env) (Component, error) {
	v := &variable{env: env, key: s.ConfigKey, constant: Invalid}
	if s.ConstantOutput != nil {
		v.constant = Value(s.ConstantOutput.Float())
	}
	return v, nil
}

type variable struct {
	env      *Env
	key      string
	constant Signal
	isBool   bool
}

func (v *variable) Step(_ Tick, _, out []Signal) {
	out[0] = v.constant
	if v.key == "" || v.env.Dynamic == nil {
		return
	}
	raw, ok := v.env.Dynamic.Get(v.env.Policy, v.key)
	if !ok {
		return
	}
	switch x := raw.(type) {
	case float64:
		out[0] = Value(x)
		if v.isBool {
			out[0] = Bool(x != 0)
		}
	case bool:
		out[0] = Bool(x)
	default:
		out[0] = Invalid
	}
}

// BoolVariable is Variable for booleans: the output is 1 (true) or 0.
type BoolVariable struct {
	ConstantOutput *bool  `yaml:"constant_output,omitempty"`
	ConfigKey      string `yaml:"config_key,omitempty"`
	OutPorts       struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *BoolVariable) Validate() []error {
	if s.ConstantOutput == nil && s.ConfigKey == "" {
		return []error{fmt.Errorf("set constant_output, config_key or both")}
	}
	return nil
}

// Ports implements Spec.
func (s *BoolVariable) Ports() ([]InPort, []OutPort) {
	return nil, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *BoolVariable) Build(env *Env) (Component, error) {
	v := &variable{env: env, key: s.ConfigKey, constant: Invalid, isBool: true}
	if s.ConstantOutput != nil {
		v.constant = Bool(*s.ConstantOutput)
	}
	return v, nil
}
