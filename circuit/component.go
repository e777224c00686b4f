package circuit

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

// Component computes one tick: it reads in (one Signal per input port, in
// the order its Spec's Ports lists them) and writes out (likewise). in and
// out are only valid during the call. Implementations are used by one
// goroutine at a time.
type Component interface {
	Step(t Tick, in, out []Signal)
}

// InPort is an input of a component: a wire, or nil when the port is
// optional and not connected (its input is then always Invalid).
type InPort struct {
	Name string
	Wire *policies.InPort
}

// OutPort is an output of a component: the signal it produces, or nil
// when the output is not used.
type OutPort struct {
	Name string
	Wire *policies.OutPort
}

// Spec is the decoded YAML of a circuit component kind.
type Spec interface {
	// Ports lists the component's inputs and outputs in the order Step
	// receives and fills them.
	Ports() (in []InPort, out []OutPort)
	// Build returns the component in its initial state.
	Build(env *Env) (Component, error)
}

// Env is what components may use at Build time.
type Env struct {
	// Policy is the key of the policy the circuit belongs to.
	Policy policies.Key
	// Index is the component's position in spec.circuit.components.
	Index int
	// Interval is the circuit's evaluation interval.
	Interval time.Duration
	// Query evaluates PromQL for promql components. Nil: none available.
	Query QueryAPI
	// Actuators receives the inputs of flow-control actuators.
	Actuators ActuatorSink
	// Dynamic holds runtime-changeable values (variables).
	Dynamic *DynamicConfig
	// Alerts receives alerter notifications. Nil: alerts are only logged.
	Alerts AlertSink
	// Logger is never nil.
	Logger *slog.Logger
	// Inputs names signals that no component produces but the caller
	// feeds with SetInput before each Step (simulation and script tests).
	// Compile-level: components never see it.
	Inputs []string
}

var (
	registryMu sync.RWMutex
	kinds      = map[string]func() Spec{} // guarded by registryMu
)

// Register makes a circuit component kind known to the policy parser and
// to Compile. newSpec returns a new spec holding the kind's defaults; if
// it has a method Validate() []error the parser calls it. Register is meant
// for init functions and panics on a duplicate kind.
func Register(kind string, newSpec func() Spec) {
	registryMu.Lock()
	if _, dup := kinds[kind]; dup {
		registryMu.Unlock()
		panic(fmt.Sprintf("circuit: kind %q registered twice", kind))
	}
	kinds[kind] = newSpec
	registryMu.Unlock()
	policies.RegisterComponent(kind, func() any { return newSpec() })
}

// actuatorPorts are the signal inputs of a flow-control component spec
// (policies.Actuator), and whether it is one.
func actuatorPorts(spec any) ([]InPort, bool) {
	a, ok := spec.(policies.Actuator)
	if !ok {
		return nil, false
	}
	var in []InPort
	for _, p := range a.ActuatorPorts() {
		in = append(in, InPort{Name: p.Name, Wire: p.Wire})
	}
	return in, true
}

// Kinds lists the registered circuit component kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ActuatorSink receives actuator inputs every tick. value is NaN when the
// signal is invalid; the actuator then falls back to its declared mode.
type ActuatorSink interface {
	SetComponentInput(policy policies.Key, component int, port string, value float64) error
}

// actuator is the component a flow-control kind becomes in a circuit.
type actuator struct {
	env   *Env
	ports []InPort
}

func (a *actuator) Step(_ Tick, in, _ []Signal) {
	if a.env.Actuators == nil {
		return
	}
	for i, p := range a.ports {
		if p.Wire == nil {
			continue
		}
		if err := a.env.Actuators.SetComponentInput(a.env.Policy, a.env.Index, p.Name, in[i].Float()); err != nil {
			a.env.Logger.Warn("actuator input refused", "policy", a.env.Policy.String(), "component", a.env.Index, "port", p.Name, "err", err)
		}
	}
}
