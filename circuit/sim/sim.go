// Package sim runs a policy's circuit deterministically, tick by tick,
// without an agent: against recorded signals (a CSV file) or against a
// plant model, a service with a capacity under a load profile. `fluxgate
// sim` is its command line.
//
// The circuit is the policy's, with its query.promql components replaced
// by inputs: their output signals come from the recording or the plant.
// Actuator inputs (a rate limiter's bucket_capacity, a load scheduler's
// load_multiplier, ...) are recorded every tick and, with a plant, decide
// what the plant admits. The plant is played flow by flow (Plant, Closed):
// open-loop clients that give up, the policy's load schedulers with their
// weighted fair queues (the agent's own, controlpoint/scheduler), a
// first-in-first-out service, and the circuit's queries as rates over
// scraped counters of flows measured when they end. Time starts at a
// fixed instant, so runs are reproducible.
package sim

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// Epoch is the simulated time of tick 0.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Table is the result of a run: one row per tick.
type Table struct {
	Columns []string    // "time_s", then signals, then actuator inputs "component.port", then plant outputs
	Rows    [][]float64 // NaN for invalid
}

// Column returns the values of one column, or nil.
func (t *Table) Column(name string) []float64 {
	for i, c := range t.Columns {
		if c == name {
			out := make([]float64, len(t.Rows))
			for r, row := range t.Rows {
				out[r] = row[i]
			}
			return out
		}
	}
	return nil
}

// actuators records the inputs a circuit hands to flow-control components.
type actuators struct {
	values map[string]float64
}

func (a *actuators) SetComponentInput(_ policies.Key, component int, port string, v float64) error {
	a.values[fmt.Sprintf("%d.%s", component, port)] = v
	return nil
}

// model is a circuit prepared for simulation.
type model struct {
	c       *circuit.Circuit
	inputs  []string // signals fed from outside: the promql outputs
	signals []string
	act     *actuators
	acts    []string
}

// prepare compiles p's circuit with its query.promql components replaced
// by inputs.
func prepare(p *policies.Policy) (*model, error) {
	cp := *p
	// The same list with the query.promql components left out (nil), so
	// every other component keeps its index.
	cp.Spec.Circuit.Components = make([]*policies.Component, len(p.Spec.Circuit.Components))
	var inputs []string
	for i, c := range p.Spec.Circuit.Components {
		if c != nil && c.Kind == "query.promql" {
			if spec, ok := c.Spec.(circuit.Spec); ok {
				_, outs := spec.Ports()
				for _, o := range outs {
					if o.Wire != nil && o.Wire.SignalName != "" {
						inputs = append(inputs, o.Wire.SignalName)
					}
				}
			}
			continue
		}
		cp.Spec.Circuit.Components[i] = c
	}
	m := &model{inputs: inputs, act: &actuators{values: map[string]float64{}}}
	c, err := circuit.Compile(&cp, circuit.Env{Actuators: m.act, Inputs: inputs})
	if err != nil {
		return nil, err
	}
	m.c = c
	for _, r := range c.Readings() {
		m.signals = append(m.signals, r.Name)
	}
	return m, nil
}

// step runs one tick and returns the row of signals (and actuator inputs
// seen so far; new ones are appended to m.acts).
func (m *model) step(n int) []float64 {
	now := Epoch.Add(time.Duration(n) * m.c.Interval())
	m.c.Step(now)
	row := []float64{now.Sub(Epoch).Seconds()}
	for _, name := range m.signals {
		v, _ := m.c.Value(name)
		row = append(row, v.Float())
	}
	for k := range m.act.values {
		if !contains(m.acts, k) {
			m.acts = append(m.acts, k)
			sort.Strings(m.acts)
		}
	}
	return row
}

func (m *model) actuatorRow() []float64 {
	out := make([]float64, len(m.acts))
	for i, k := range m.acts {
		v, ok := m.act.values[k]
		if !ok {
			v = math.NaN()
		}
		out[i] = v
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// Recorded runs p's circuit against recorded input signals: rows[i] holds
// the inputs of tick i, by signal name (a missing name or NaN is invalid).
// Signals the recording names that the circuit does not read are an error.
func Recorded(p *policies.Policy, rows []map[string]float64) (*Table, error) {
	m, err := prepare(p)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		for name := range r {
			if !contains(m.inputs, name) {
				return nil, fmt.Errorf("sim: the recording has signal %q, but the circuit's inputs (query.promql outputs) are: %s", name, strings.Join(m.inputs, ", "))
			}
		}
	}
	var raw [][]float64
	for n, r := range rows {
		for _, name := range m.inputs {
			v, ok := r[name]
			if !ok {
				v = math.NaN()
			}
			m.c.SetInput(name, circuit.Value(v))
		}
		raw = append(raw, append(m.step(n), m.actuatorRow()...))
	}
	return m.table(raw, nil), nil
}

func (m *model) table(raw [][]float64, extra []string) *Table {
	t := &Table{Columns: append(append(append([]string{"time_s"}, m.signals...), m.acts...), extra...)}
	width := len(t.Columns)
	for _, r := range raw {
		row := make([]float64, width)
		for i := range row {
			row[i] = math.NaN()
		}
		// Actuator columns may have appeared after early rows were taken;
		// rows are [time, signals..., actuators-known-then..., extra...].
		copy(row, r[:1+len(m.signals)])
		rest := r[1+len(m.signals):]
		nActs := len(rest) - len(extra)
		copy(row[1+len(m.signals):], rest[:nActs])
		copy(row[width-len(extra):], rest[nActs:])
		t.Rows = append(t.Rows, row)
	}
	return t
}
