package scheduler

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// arriveEvery sends one-token flows every step for d from t0+from and
// returns the estimate after the last.
func arriveEvery(r *IncomingRate, t0 time.Time, step, from, d time.Duration) float64 {
	for t := from; t < from+d; t += step {
		r.Arrive(t0.Add(t), 1)
	}
	return r.Rate()
}

// A step table: windows of at least 100 ms closed by the next flow, a lull
// dropped and the fresh window's reading replacing the estimate, and a
// fresh window closing after a silence.
func TestIncomingRateSteps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var r IncomingRate
	for _, s := range []struct {
		ms      int
		changed bool
		rate    float64 // NaN: unmeasured
	}{
		{0, false, math.NaN()},  // opens the first window
		{50, false, math.NaN()}, // counts in it
		{100, true, 20},         // 2 flows in 100 ms, the first reading; opens the next window
		{150, false, 20},        //
		{200, true, 20},         // 2 in 100 ms
		{210, false, 20},        //
		{220, false, 20},        //
		{300, true, 25},         // 3 in 100 ms: (0.5 × 2 + 0.5 × 3) / 100 ms
		{500, true, 25},         // 200 ms of silence, over 2 intervals and 100 ms: a lull, dropped
		{550, false, 25},        // the fresh window
		{600, true, 20},         // 2 in 100 ms, replacing
		{650, false, 20},        //
		{700, true, 20},         // 2 in 100 ms
		{3700, true, 20},        // a lull of 3 s
		{6700, true, 1 / 3.0},   // a fresh window closes even after a silence: 1 flow in 3 s
		{6800, true, 1 / 1.55},  // 1 flow in 100 ms, weighed by length: (0.5 + 0.5) / (1.5 s + 50 ms)
	} {
		changed := r.Arrive(t0.Add(time.Duration(s.ms)*time.Millisecond), 1)
		got := r.Rate()
		if changed != s.changed || (math.IsNaN(s.rate) != math.IsNaN(got)) || math.Abs(got-s.rate) > 1e-9 {
			t.Fatalf("flow at %d ms: changed %v, rate %v; want %v, %v", s.ms, changed, got, s.changed, s.rate)
		}
	}
}

// The estimate's time average under Poisson arrivals, against the bounds
// the package doc states.
func TestIncomingRatePoisson(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(1000, 0)
	for _, c := range []struct{ lambda, atMost float64 }{{10, 1.3}, {20, 1.2}, {50, 1.05}, {100, 1.04}, {1000, 1.04}} {
		var r IncomingRate
		at, sum, span := 0.0, 0.0, 0.0
		for at < 600 {
			gap := rng.ExpFloat64() / c.lambda
			if at > 5 { // the estimate holds from the previous flow to this one
				sum += r.Rate() * gap
				span += gap
			}
			at += gap
			r.Arrive(t0.Add(time.Duration(at*float64(time.Second))), 1)
		}
		ratio := sum / span / c.lambda
		t.Logf("Poisson at %g/s: time-averaged estimate %.3f × the rate", c.lambda, ratio)
		if ratio < 0.96 || ratio > c.atMost {
			t.Errorf("Poisson at %g/s: time-averaged estimate %.3f × the rate, want 0.96–%.2f", c.lambda, ratio, c.atMost)
		}
	}
}

// Sparse traffic after a busy spell is measured, not held at the busy
// rate: each flow after a lull opens a fresh window, and a fresh window
// closes as a reading.
func TestIncomingRateLearnsSparseTraffic(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var r IncomingRate
	if got := arriveEvery(&r, t0, 10*time.Millisecond, 0, time.Second); math.Abs(got-100) > 0.01 {
		t.Fatalf("100 flows/s read as %v", got)
	}
	if got := arriveEvery(&r, t0, 2*time.Second, 2*time.Second, 20*time.Second); math.Abs(got-0.5) > 0.01 {
		t.Fatalf("a flow every 2 s after 100 flows/s read as %v, want 0.5", got)
	}
}
