package sim

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Plant is a service model: it completes Capacity requests per second,
// first in first out; what it admits beyond that queues, and queueing adds
// latency. A flow's latency is known when it completes, as a flux meter
// knows it: latency_ms is the mean latency of the flows that completed in
// the last Window, so a backlog shows in it only as its flows come out.
// The circuit sees the plant's outputs one tick late, as it would see them
// through PromQL.
type Plant struct {
	// Capacity is the requests per second the service completes. Required.
	Capacity float64 `yaml:"capacity"`
	// BaseLatency is the latency without queueing. Default 20ms.
	BaseLatency time.Duration `yaml:"base_latency,omitempty"`
	// Duration of the run. Default 60s.
	Duration time.Duration `yaml:"duration,omitempty"`
	// Window is the rate window latency_ms averages completed flows over,
	// as the circuit's query does. Default 5s.
	Window time.Duration `yaml:"window,omitempty"`
	// GoodLatency bounds the latency of a flow that counts as goodput
	// (goodput_rps). Default 5 × BaseLatency.
	GoodLatency time.Duration `yaml:"good_latency,omitempty"`
	// Jitter varies each request's service time by ×U(1−Jitter,
	// 1+Jitter) in the in-path simulation (a policy with an
	// adaptive_concurrency component), which serves requests one by one
	// with capacity × base_latency workers. Default 0.
	Jitter float64 `yaml:"jitter,omitempty"`
	// Load is the offered load: each step holds from its time on.
	Load []LoadStep `yaml:"load"`
	// Signals maps circuit inputs (the outputs of its query.promql
	// components) to plant outputs, each as a query over the last Window
	// reads it: latency_ms (the mean of the flows completed), offered_rps,
	// admitted_rps, served_rps, peak_served_rps (the most served_rps of
	// the last minute); and, for judging a run, goodput_rps (flows
	// completed within GoodLatency in the last tick), queue and
	// queue_latency_ms (what a flow admitted now would wait).
	Signals map[string]string `yaml:"signals"`
}

// LoadStep is the offered load from At on.
type LoadStep struct {
	At  time.Duration `yaml:"at"`
	RPS float64       `yaml:"rps"`
}

// Plant outputs.
var plantOutputs = []string{"offered_rps", "admitted_rps", "served_rps", "peak_served_rps", "goodput_rps", "queue", "queue_latency_ms", "latency_ms"}

// ParsePlant decodes a plant file strictly, with positioned errors.
func ParsePlant(file string, data []byte) (*Plant, error) {
	p := &Plant{}
	if err := strictyaml.Unmarshal(file, data, p); err != nil {
		return nil, err
	}
	var errs []string
	if p.Capacity <= 0 {
		errs = append(errs, "capacity must be positive")
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		errs = append(errs, "jitter must be within 0..1")
	}
	if len(p.Load) == 0 {
		errs = append(errs, "load needs at least one step")
	}
	for name, out := range p.Signals {
		if !contains(plantOutputs, out) {
			errs = append(errs, fmt.Sprintf("signals.%s: %q is not one of %s", name, out, strings.Join(plantOutputs, ", ")))
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", file, strings.Join(errs, "; "))
	}
	if p.BaseLatency == 0 {
		p.BaseLatency = 20 * time.Millisecond
	}
	if p.Duration == 0 {
		p.Duration = time.Minute
	}
	if p.Window == 0 {
		p.Window = 5 * time.Second
	}
	if p.GoodLatency == 0 {
		p.GoodLatency = 5 * p.BaseLatency
	}
	sort.SliceStable(p.Load, func(i, j int) bool { return p.Load[i].At < p.Load[j].At })
	return p, nil
}

// Phases is the load as consecutive phases of constant offered load up to
// Duration.
func (p *Plant) Phases() []LoadStep {
	var out []LoadStep
	for i, s := range p.Load {
		if s.At >= p.Duration {
			break
		}
		if i == 0 && s.At > 0 {
			out = append(out, LoadStep{At: 0})
		}
		out = append(out, s)
	}
	return out
}

func (p *Plant) offered(at time.Duration) float64 {
	rps := 0.0
	for _, s := range p.Load {
		if s.At <= at {
			rps = s.RPS
		}
	}
	return rps
}

// Closed runs pol's circuit against the plant: each tick the plant admits
// what the circuit's actuators allow of the offered load, and the circuit
// reads the plant's outputs of the previous tick.
func Closed(pol *policies.Policy, plant *Plant) (*Table, error) {
	m, err := prepare(pol)
	if err != nil {
		return nil, err
	}
	for _, in := range m.inputs {
		if _, ok := plant.Signals[in]; !ok {
			return nil, fmt.Errorf("sim: the circuit reads %q (a query.promql output) but the plant's signals do not map it", in)
		}
	}
	dt := m.c.Interval()
	ticks := int(plant.Duration / dt)
	outputs := map[string]float64{}
	for _, o := range plantOutputs {
		outputs[o] = math.NaN() // nothing measured before the first tick
	}
	q := &fifo{capacity: plant.Capacity, base: plant.BaseLatency.Seconds(), good: plant.GoodLatency.Seconds()}
	window := max(1, int(plant.Window/dt))
	var done []tickStats // per tick, the flows that completed
	var peaks []float64  // served_rps, per tick
	var raw [][]float64
	for n := 0; n < ticks; n++ {
		for _, in := range m.inputs {
			m.c.SetInput(in, circuit.Value(outputs[plant.Signals[in]]))
		}
		row := m.step(n)
		offered := plant.offered(time.Duration(n) * dt)
		admitted := offered * admitFraction(m.act.values)
		if lim := rateLimit(pol, m.act.values); admitted > lim {
			admitted = lim
		}
		st := q.run(float64(n)*dt.Seconds(), dt.Seconds(), admitted)
		st.offered, st.admitted = offered, admitted
		done = append(done, st)
		// Rates and latency as a query over the last Window reads them.
		var w tickStats
		recent := done[max(0, len(done)-window):]
		for _, d := range recent {
			w.count += d.count
			w.latency += d.latency
			w.offered += d.offered
			w.admitted += d.admitted
		}
		secs := dt.Seconds()
		span := float64(len(recent)) * secs
		outputs["offered_rps"] = w.offered / float64(len(recent))
		outputs["admitted_rps"] = w.admitted / float64(len(recent))
		outputs["served_rps"] = w.count / span
		peaks = append(peaks, outputs["served_rps"])
		outputs["peak_served_rps"] = 0
		for _, p := range peaks[max(0, len(peaks)-int(time.Minute/dt)):] {
			outputs["peak_served_rps"] = math.Max(outputs["peak_served_rps"], p)
		}
		outputs["goodput_rps"] = st.good / secs
		outputs["queue"] = q.backlog()
		outputs["queue_latency_ms"] = 1000 * (q.base + q.backlog()/q.capacity)
		outputs["latency_ms"] = math.NaN() // no flow completed in the window: no reading
		if w.count > 0 {
			outputs["latency_ms"] = 1000 * w.latency / w.count
		}
		row = append(row, m.actuatorRow()...)
		for _, o := range plantOutputs {
			row = append(row, outputs[o])
		}
		raw = append(raw, row)
	}
	return m.table(raw, prefixed("plant.", plantOutputs)), nil
}

func prefixed(pre string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = pre + x
	}
	return out
}

// admitFraction is the share of offered flows the samplers and load
// schedulers let through.
func admitFraction(acts map[string]float64) float64 {
	f := 1.0
	for k, v := range acts {
		if math.IsNaN(v) {
			continue // an invalid input: the actuator passes everything
		}
		switch {
		case strings.HasSuffix(k, ".load_multiplier"):
			f *= math.Max(0, math.Min(1, v))
		case strings.HasSuffix(k, ".accept_percentage"):
			f *= math.Max(0, math.Min(100, v)) / 100
		}
	}
	return f
}

// rateLimit is the tightest rate (per second) the rate limiters allow.
func rateLimit(pol *policies.Policy, acts map[string]float64) float64 {
	lim := math.Inf(1)
	for k, v := range acts {
		idx, port, ok := strings.Cut(k, ".")
		if !ok || port != "fill_amount" || math.IsNaN(v) {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i >= len(pol.Spec.Circuit.Components) {
			continue
		}
		if rl, ok := pol.Spec.Circuit.Components[i].Spec.(*policies.RateLimiter); ok && rl.Parameters.Interval > 0 {
			lim = math.Min(lim, v/rl.Parameters.Interval.Seconds())
		}
	}
	return lim
}
