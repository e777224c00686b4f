package circuit

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/policies"
)

// An invalid signal is exported as NaN, never as a real-looking number:
// neither 0 before its first value nor its last value once it fails.
func TestInvalidSignalReadingIsNaN(t *testing.T) {
	f := &fakeQuery{err: errors.New("prometheus unreachable")}
	reg := prometheus.NewPedanticRegistry()
	rt, err := NewRuntime(Options{Query: f, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p := parseCircuit(t, `
- query:
    promql:
      query_string: up
      out_ports: {output: {signal_name: UP}}
`)
	p.Spec.Circuit.EvaluationInterval = 20 * time.Millisecond
	if err := rt.SetPolicies([]*policies.Policy{p}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rt.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	reading := func() float64 {
		g, err := rt.readings.GetMetricWithLabelValues("c", "UP")
		if err != nil {
			t.Fatal(err)
		}
		return testutil.ToFloat64(g)
	}
	waitUntil := func(what string, cond func(float64) bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if v := reading(); cond(v) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("signal_reading{signal_name=UP} = %v, want %s", reading(), what)
			}
		}
	}
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(rt.invalid.WithLabelValues("c", "UP")) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no invalid ticks counted")
		}
	}
	if v := reading(); !math.IsNaN(v) {
		t.Fatalf("never valid: signal_reading = %v, want NaN", v)
	}
	f.set(5, nil, false)
	waitUntil("5", func(v float64) bool { return v == 5 })
	f.set(0, errors.New("prometheus unreachable"), false)
	waitUntil("NaN once the query keeps failing", math.IsNaN)
}
