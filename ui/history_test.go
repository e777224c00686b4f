package ui

import (
	"math"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// fakeCircuits is a Source whose readings the test sets.
type fakeCircuits map[policies.Key][]circuit.Reading

func (f fakeCircuits) Policies() []policies.Key {
	var out []policies.Key
	for k := range f {
		out = append(out, k)
	}
	return out
}

func (f fakeCircuits) Signals(k policies.Key) ([]circuit.Reading, bool) {
	r, ok := f[k]
	return r, ok
}

func TestHistoryRingKeepsTheNewestPoints(t *testing.T) {
	k := policies.Key{Namespace: "default", Name: "p"}
	src := fakeCircuits{k: {{Name: "A", Valid: true}, {Name: "B"}}}
	h := NewHistory(src, 5, 0)
	t0 := time.UnixMilli(1_000_000)
	for i := 0; i < 12; i++ {
		src[k][0].Value = float64(i)
		src[k][1].Valid, src[k][1].Value = i%3 == 0, math.NaN()
		h.Sample(t0.Add(time.Duration(i) * time.Second))
	}
	series, ok := h.Since(k, 0)
	if !ok || len(series) != 2 {
		t.Fatalf("Since = %v, %v", series, ok)
	}
	a := series[0]
	if len(a.T) != 5 || len(a.V) != 5 {
		t.Fatalf("ring of 5 holds %d times, %d values", len(a.T), len(a.V))
	}
	for i, v := range a.V { // samples 7..11, oldest first
		if v == nil || *v != float64(7+i) || a.T[i] != t0.Add(time.Duration(7+i)*time.Second).UnixMilli() {
			t.Fatalf("A[%d] = %v at %d", i, v, a.T[i])
		}
	}
	for i, v := range series[1].V { // B is valid at 9 only, and its value is NaN: invalid all along
		if v != nil {
			t.Fatalf("B[%d] = %v, want null (invalid)", i, *v)
		}
	}
	if series[1].Value != 0 {
		t.Fatalf("a NaN current value must read 0 in JSON, got %v", series[1].Value)
	}
	later, _ := h.Since(k, t0.Add(9*time.Second).UnixMilli())
	if len(later[0].T) != 2 {
		t.Fatalf("since the 10th sample: %d points, want 2", len(later[0].T))
	}
}

func TestHistoryBoundsSignalsAndForgetsStoppedCircuits(t *testing.T) {
	k1, k2 := policies.Key{Namespace: "default", Name: "a"}, policies.Key{Namespace: "default", Name: "b"}
	src := fakeCircuits{
		k1: {{Name: "X", Valid: true}, {Name: "Y", Valid: true}},
		k2: {{Name: "Z", Valid: true}, {Name: "W", Valid: true}},
	}
	h := NewHistory(src, 3, 3)
	h.Sample(time.UnixMilli(1))
	if n, dropped := h.Stats(); n != 3 || dropped != 1 {
		t.Fatalf("4 signals, room for 3: recorded %d, dropped %d", n, dropped)
	}
	delete(src, k1)
	h.Sample(time.UnixMilli(2))
	if n, dropped := h.Stats(); n != 2 || dropped != 0 {
		t.Fatalf("after a's circuit stopped: recorded %d, dropped %d", n, dropped)
	}
	src[k2] = src[k2][:1] // a reload removed W
	h.Sample(time.UnixMilli(3))
	if n, _ := h.Stats(); n != 1 {
		t.Fatalf("after W went: recorded %d", n)
	}
	if _, ok := h.Since(k1, 0); ok {
		t.Fatal("history of a stopped circuit")
	}
}
