package circuit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// QueryAPI evaluates an instant PromQL query that yields one number. An
// error or a result that is not a single number makes the signal invalid.
type QueryAPI interface {
	Query(ctx context.Context, query string, at time.Time) (float64, error)
}

// Closer is implemented by components that hold resources beyond Step,
// such as the worker goroutine of query.promql. Runtime calls Close once,
// when the circuit stops; the component is not stepped afterwards. Close
// should be safe to call more than once.
type Closer interface {
	Close()
}

// Close closes the circuit's components that implement Closer. Runtime
// calls it when a circuit stops; a caller that steps a Circuit itself
// calls it when done with it.
func (c *Circuit) Close() {
	for _, n := range c.nodes {
		if cl, ok := n.comp.(Closer); ok {
			cl.Close()
		}
	}
}

// AlertSink receives alerts from alerter components.
type AlertSink interface {
	// Fire reports the alert active; Resolve reports it cleared.
	Fire(ctx context.Context, a Alert) error
	Resolve(ctx context.Context, a Alert) error
}

// Alert is one alerter's alert.
type Alert struct {
	Name        string
	Severity    string
	Labels      map[string]string
	Annotations map[string]string
	StartsAt    time.Time
	// EndsAt is set when the alert is resolved: the tick that cleared it.
	EndsAt time.Time
}

// Options configures a Runtime.
type Options struct {
	Query     QueryAPI
	Actuators ActuatorSink
	Alerts    AlertSink
	// Dynamic holds runtime values for variables. Nil means a new one.
	Dynamic *DynamicConfig
	// Logger; nil means silent.
	Logger *slog.Logger
	// Registerer receives signal_reading, invalid_signal_readings_total and
	// the runner metrics. Nil means none.
	Registerer prometheus.Registerer
}

// Runtime runs the circuits of the loaded policies, each on its own ticker.
// SetPolicies may be called at any time; Run owns the runner goroutines.
type Runtime struct {
	opts    Options
	logger  *slog.Logger
	dynamic *DynamicConfig

	readings *prometheus.GaugeVec
	invalid  *prometheus.CounterVec
	missed   *prometheus.CounterVec
	ticks    *prometheus.CounterVec

	mu       sync.Mutex
	circuits map[policies.Key]*running // guarded by mu
	changed  chan struct{}             // wakes Run after SetPolicies
}

type running struct {
	obj    *policies.Policy
	c      *Circuit
	cancel context.CancelFunc // nil until Run starts it
	done   chan struct{}
}

// NewRuntime returns a Runtime with no circuits.
func NewRuntime(opts Options) (*Runtime, error) {
	r := &Runtime{
		opts:     opts,
		logger:   opts.Logger,
		dynamic:  opts.Dynamic,
		circuits: map[policies.Key]*running{},
		changed:  make(chan struct{}, 1),
		readings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.SignalReading,
			Help: "The latest value of each circuit signal; NaN while it is invalid.",
		}, []string{metricnames.LabelPolicyName, metricnames.LabelSignalName}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.InvalidSignalReadingsTotal,
			Help: "Ticks in which a circuit signal had no valid value.",
		}, []string{metricnames.LabelPolicyName, metricnames.LabelSignalName}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_circuit_missed_ticks_total",
			Help: "Ticks a circuit skipped because the previous one ran late.",
		}, []string{metricnames.LabelPolicyName}),
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_circuit_ticks_total",
			Help: "Circuit ticks evaluated.",
		}, []string{metricnames.LabelPolicyName}),
	}
	if r.logger == nil {
		r.logger = discardLogger
	}
	if r.dynamic == nil {
		r.dynamic = NewDynamicConfig()
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{r.readings, r.invalid, r.missed, r.ticks} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("circuit: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Dynamic is the runtime's dynamic configuration.
func (r *Runtime) Dynamic() *DynamicConfig { return r.dynamic }

func (r *Runtime) env() Env {
	return Env{Query: r.opts.Query, Actuators: r.opts.Actuators, Dynamic: r.dynamic, Alerts: r.opts.Alerts, Logger: r.logger}
}

// Validate compiles obj's circuit without running it, for the policy
// store's check hook.
func (r *Runtime) Validate(obj policies.Object) error {
	p, ok := obj.(*policies.Policy)
	if !ok {
		return nil
	}
	_, err := Compile(p, r.env())
	return err
}

// SetPolicies installs the circuits of ps. A policy whose object did not
// change keeps its running circuit and all its state; a changed one starts
// afresh; a removed one stops and its signal series are deleted.
func (r *Runtime) SetPolicies(ps []*policies.Policy) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[policies.Key]*running, len(ps))
	var errs []error
	for _, p := range ps {
		key := p.Key()
		if old := r.circuits[key]; old != nil && old.obj == p {
			next[key] = old
			continue
		}
		if len(p.Spec.Circuit.Components) == 0 {
			continue
		}
		c, err := Compile(p, r.env())
		if err != nil {
			errs = append(errs, fmt.Errorf("policy %s: %w", key, err))
			if old := r.circuits[key]; old != nil {
				next[key] = old
			}
			continue
		}
		next[key] = &running{obj: p, c: c}
	}
	for key, old := range r.circuits {
		if next[key] != old && old.cancel != nil {
			old.cancel()
		}
	}
	r.circuits = next
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return errors.Join(errs...)
}

// Run starts and stops the circuits' runners as SetPolicies changes them,
// until ctx is done; it then stops every runner and waits for them.
func (r *Runtime) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		r.mu.Lock()
		for _, run := range r.circuits {
			if run.cancel == nil {
				cctx, cancel := context.WithCancel(ctx)
				run.cancel, run.done = cancel, make(chan struct{})
				wg.Add(1)
				go func(run *running) {
					defer wg.Done()
					defer close(run.done)
					r.runCircuit(cctx, run.c)
				}(run)
			}
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		}
	}
}

// runCircuit ticks c until ctx is done. A tick that runs late never piles
// up: the ticker drops the ticks it could not deliver, and they are
// counted as missed.
func (r *Runtime) runCircuit(ctx context.Context, c *Circuit) {
	defer c.Close()
	name := c.policy.Name
	missed, ticks := r.missed.WithLabelValues(name), r.ticks.WithLabelValues(name)
	gauges := make([]prometheus.Gauge, len(c.names))
	invalid := make([]prometheus.Counter, len(c.names))
	for i, s := range c.names {
		gauges[i] = r.readings.WithLabelValues(name, s)
		gauges[i].Set(math.NaN()) // no value yet: not a real-looking 0
		invalid[i] = r.invalid.WithLabelValues(name, s)
	}
	// export publishes a step's values: an invalid signal reads NaN,
	// never 0 or a stale value that looks current. Ticks (not the first
	// step, which ticks does not count either) count invalid ones.
	export := func(tick bool) {
		for i, v := range c.values {
			if v.Valid {
				gauges[i].Set(v.V)
				continue
			}
			gauges[i].Set(math.NaN())
			if tick {
				invalid[i].Inc()
			}
		}
	}
	defer func() {
		r.readings.DeletePartialMatch(prometheus.Labels{metricnames.LabelPolicyName: name})
		r.invalid.DeletePartialMatch(prometheus.Labels{metricnames.LabelPolicyName: name})
	}()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	last := time.Now()
	c.Step(last)
	export(false)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gap := now.Sub(last); gap > c.interval*3/2 {
				missed.Add(float64(gap/c.interval - 1))
			}
			last = now
			c.Step(now)
			ticks.Inc()
			export(true)
		}
	}
}

// Signals returns the latest readings of a policy's circuit.
func (r *Runtime) Signals(key policies.Key) ([]Reading, bool) {
	r.mu.Lock()
	run := r.circuits[key]
	r.mu.Unlock()
	if run == nil {
		return nil, false
	}
	return run.c.Readings(), true
}

// Policies lists the keys of running circuits.
func (r *Runtime) Policies() []policies.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]policies.Key, 0, len(r.circuits))
	for k := range r.circuits {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
