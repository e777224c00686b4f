package breaker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPrometheusListener(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	l, err := NewPrometheusListener(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second listener on the same registry shares the families.
	l2, err := NewPrometheusListener(reg)
	if err != nil {
		t.Fatalf("second listener: %v", err)
	}
	b := mustNew(t, Config{MinRequests: 1, OpenFor: time.Second, HalfOpenProbes: 1}, l)
	other, _ := New(Options{Name: "other", Listeners: []Listener{l2}})
	_ = other

	p, _ := b.AllowAt(at(0))
	b.DoneAt(at(0), p, errors.New("boom"))
	p, _ = b.AllowAt(at(time.Second)) // half-open probe

	want := `
# HELP circuit_breaker_state Whether the circuit breaker is in this state (1) or not (0).
# TYPE circuit_breaker_state gauge
circuit_breaker_state{circuit_name="other",state="closed"} 1
circuit_breaker_state{circuit_name="other",state="half_open"} 0
circuit_breaker_state{circuit_name="other",state="open"} 0
circuit_breaker_state{circuit_name="test",state="closed"} 0
circuit_breaker_state{circuit_name="test",state="half_open"} 1
circuit_breaker_state{circuit_name="test",state="open"} 0
# HELP circuit_breaker_state_transition_total State transitions of the circuit breaker.
# TYPE circuit_breaker_state_transition_total counter
circuit_breaker_state_transition_total{circuit_name="test",new_state="half_open",old_state="open"} 1
circuit_breaker_state_transition_total{circuit_name="test",new_state="open",old_state="closed"} 1
# HELP fluxgate_circuit_breaker_state State of the circuit breaker: 0 closed, 1 open, 2 half-open.
# TYPE fluxgate_circuit_breaker_state gauge
fluxgate_circuit_breaker_state{circuit_name="other"} 0
fluxgate_circuit_breaker_state{circuit_name="test"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	// Close deletes the listener's own series, and only those.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_ = l.Close() // idempotent
	if n := testutil.CollectAndCount(l.state); n != 3 {
		t.Errorf("circuit_breaker_state has %d series after Close, want the 3 of \"other\"", n)
	}
	if n := testutil.CollectAndCount(l.trans); n != 0 {
		t.Errorf("transition counter has %d series after Close", n)
	}
	// Used after Close, it exports again.
	b.DoneAt(at(time.Second), p, nil)
	if got := testutil.ToFloat64(l.numeric.WithLabelValues("test")); got != 0 {
		t.Errorf("fluxgate_circuit_breaker_state{test} = %g after closing, want 0", got)
	}
	l2.Forget("other")
	if n := testutil.CollectAndCount(l.numeric); n != 1 {
		t.Errorf("%d numeric series after Forget(other), want 1", n)
	}
}
