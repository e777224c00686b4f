package breaker

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/metricnames"
)

// PrometheusListener exports the state and transitions of breakers:
//
//	circuit_breaker_state{circuit_name, state}                             1 for the current state, 0 for the others
//	circuit_breaker_state_transition_total{circuit_name, old_state, new_state}
//	fluxgate_circuit_breaker_state{circuit_name}                          0 closed, 1 open, 2 half-open
//
// One listener may serve any number of breakers, told apart by their
// names; several listeners on one Registerer share the metric families.
// It is safe for concurrent use.
type PrometheusListener struct {
	state   *prometheus.GaugeVec
	trans   *prometheus.CounterVec
	numeric *prometheus.GaugeVec

	mu    sync.Mutex
	names map[string]struct{} // circuit names with series; guarded by mu
}

var (
	_ Listener = (*PrometheusListener)(nil)
	_ Attacher = (*PrometheusListener)(nil)
)

// NewPrometheusListener registers the metrics on reg (nil means none,
// useful in tests that read the collectors directly). If another listener
// already registered them on reg, they are shared.
func NewPrometheusListener(reg prometheus.Registerer) (*PrometheusListener, error) {
	l := &PrometheusListener{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.BreakerState,
			Help: "Whether the circuit breaker is in this state (1) or not (0).",
		}, []string{metricnames.LabelCircuitName, metricnames.LabelState}),
		trans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.BreakerStateTransitionTotal,
			Help: "State transitions of the circuit breaker.",
		}, []string{metricnames.LabelCircuitName, metricnames.LabelOldState, metricnames.LabelNewState}),
		numeric: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.BreakerStateNumeric,
			Help: "State of the circuit breaker: 0 closed, 1 open, 2 half-open.",
		}, []string{metricnames.LabelCircuitName}),
		names: make(map[string]struct{}),
	}
	if reg == nil {
		return l, nil
	}
	var err error
	l.state, err = register(reg, l.state)
	if err != nil {
		return nil, err
	}
	l.trans, err = register(reg, l.trans)
	if err != nil {
		return nil, err
	}
	l.numeric, err = register(reg, l.numeric)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// register registers c on reg, or returns the equal collector already
// registered there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// Attach exports the initial state of a new breaker.
func (l *PrometheusListener) Attach(name string, s State) { l.set(name, s) }

// OnTransition exports the new state and counts the transition.
func (l *PrometheusListener) OnTransition(name string, from, to State, _ string) {
	l.set(name, to)
	l.trans.WithLabelValues(name, from.String(), to.String()).Inc()
}

func (l *PrometheusListener) set(name string, s State) {
	l.mu.Lock()
	l.names[name] = struct{}{}
	l.mu.Unlock()
	for _, st := range States {
		v := 0.0
		if st == s {
			v = 1
		}
		l.state.WithLabelValues(name, st.String()).Set(v)
	}
	l.numeric.WithLabelValues(name).Set(float64(s))
}

// Forget deletes the series of one breaker, for a breaker that goes away.
// A later transition of that breaker exports it again.
func (l *PrometheusListener) Forget(name string) {
	l.mu.Lock()
	delete(l.names, name)
	l.mu.Unlock()
	l.deleteSeries(name)
}

func (l *PrometheusListener) deleteSeries(name string) {
	match := prometheus.Labels{metricnames.LabelCircuitName: name}
	l.state.DeletePartialMatch(match)
	l.trans.DeletePartialMatch(match)
	l.numeric.DeletePartialMatch(match)
}

// Close deletes every series this listener exported. It is idempotent;
// the listener may still be used afterwards and exports again on the next
// transition. It does not unregister the metric families, which other
// listeners may share.
func (l *PrometheusListener) Close() error {
	l.mu.Lock()
	names := l.names
	l.names = make(map[string]struct{})
	l.mu.Unlock()
	for name := range names {
		l.deleteSeries(name)
	}
	return nil
}
