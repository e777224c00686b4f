package agent

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/policies"
)

// Actuators takes the circuits' inputs of the flow-control kinds that the
// decision engine does not build: kinds another part of the program
// implements (the built-in gateway's, joined to the agent by package
// fluxgate). spec is the component's spec, a type of package policies;
// value is NaN when the signal is invalid.
type Actuators interface {
	SetActuatorInput(spec any, port string, value float64) error
}

// SetActuators sends the circuits' inputs of the actuator kinds the
// decision engine does not build to s from now on; nil drops them again,
// as in a process where nothing implements those kinds.
func (a *Agent) SetActuators(s Actuators) {
	if s == nil {
		a.ext.extra.Store(nil)
		return
	}
	a.ext.extra.Store(&actuatorsBox{s})
}

// SetCompiledPolicies installs ps, policies compiled by another part of
// the program under the name source, next to the store's policies: in
// the decision engine, the flux meter processor and the circuit runtime.
// Each call replaces source's previous set; an empty ps removes it. They
// must not share a key with a stored policy or another source's (the
// gateway compiles each TrafficPolicy under the TrafficPolicy's own key,
// which the store holds for nothing else).
func (a *Agent) SetCompiledPolicies(source string, ps []*policies.Policy) {
	a.ext.mu.Lock()
	if len(ps) == 0 {
		delete(a.ext.compiled, source)
	} else {
		if a.ext.compiled == nil {
			a.ext.compiled = map[string][]*policies.Policy{}
		}
		a.ext.compiled[source] = ps
	}
	a.ext.mu.Unlock()
	a.installPolicies(nil, a.store.Snapshot())
}

// extensions are what other parts of the program add to the agent:
// sinks for actuator kinds the engine does not build, and compiled
// policies. As the circuit runtime's ActuatorSink they route each
// component's inputs to the engine or to the extra sink.
type extensions struct {
	engine  circuit.ActuatorSink
	extra   atomic.Pointer[actuatorsBox]         // nil: none set
	foreign atomic.Pointer[map[componentRef]any] // specs of the store's policies the engine does not build

	mu       sync.Mutex                    // serializes installPolicies; guards compiled
	compiled map[string][]*policies.Policy // by source (SetCompiledPolicies)
}

type actuatorsBox struct{ s Actuators }

// componentRef names one component of one policy's circuit.
type componentRef struct {
	policy policies.Key
	index  int
}

var _ circuit.ActuatorSink = (*extensions)(nil)

// SetComponentInput implements circuit.ActuatorSink.
func (x *extensions) SetComponentInput(key policies.Key, component int, port string, value float64) error {
	if m := x.foreign.Load(); m != nil {
		if spec, ok := (*m)[componentRef{key, component}]; ok {
			b := x.extra.Load()
			if b == nil {
				return nil // nothing in this process implements the kind
			}
			return b.s.SetActuatorInput(spec, port, value)
		}
	}
	return x.engine.SetComponentInput(key, component, port, value)
}

// indexForeign indexes the actuator components of cur's policies that the
// decision engine does not build. It is subscribed to the store before
// installPolicies, so the index is current when the circuit runtime
// receives the policies.
func (x *extensions) indexForeign(_, cur *PolicySnapshot) {
	m := make(map[componentRef]any)
	for key, e := range cur.Entries {
		p, ok := e.Object.(*policies.Policy)
		if !ok {
			continue
		}
		for i, c := range p.Spec.Circuit.Components {
			if c == nil {
				continue
			}
			if _, actuator := c.Spec.(policies.Actuator); actuator && !controlpoint.IsKind(c.Spec) {
				m[componentRef{key, i}] = c.Spec
			}
		}
	}
	x.foreign.Store(&m)
}

// compiledLocked lists the compiled policies of every source, by source
// name. The caller holds mu.
func (x *extensions) compiledLocked() []*policies.Policy {
	sources := make([]string, 0, len(x.compiled))
	for s := range x.compiled {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	var ps []*policies.Policy
	for _, s := range sources {
		ps = append(ps, x.compiled[s]...)
	}
	return ps
}
