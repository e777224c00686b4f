package controlpoint

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

const loadSchedulerPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: protect}
spec:
  circuit:
    components:
      - flow_control:
          load_scheduler:
            selectors: [{control_point: api}]
            in_ports: {load_multiplier: %s}
            parameters:
              workloads:
                - name: checkout
                  label_matcher: {match_labels: {route: checkout}}
                  parameters: {priority: 2, queue_timeout: 20ms}
              default_workload_parameters: {priority: 0, queue_timeout: 20ms}
`

// openLoop sends flows at rate per second for d, each from its own
// goroutine, and counts admissions per route after the first warm-up.
func openLoop(e *Engine, rate int, d, warmup time.Duration, routes ...string) map[string][2]int {
	var mu sync.Mutex
	counts := map[string][2]int{} // route → {admitted, sent}
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; time.Since(start) < d; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		route := routes[i%len(routes)]
		measured := time.Since(start) > warmup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var dec Decision
			e.Check(ctx, time.Now(), &Request{ControlPoint: "api", Labels: map[string]string{"route": route}}, &dec)
			if !measured {
				return
			}
			mu.Lock()
			c := counts[route]
			c[1]++
			if dec.Accepted {
				c[0]++
			}
			counts[route] = c
			mu.Unlock()
		}()
	}
	wg.Wait()
	return counts
}

func TestLoadSchedulerAdmitsTheMultipliedRate(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 0.5}}"))
	got := openLoop(e, 400, 1500*time.Millisecond, 500*time.Millisecond, "browse")
	admitted, sent := got["browse"][0], got["browse"][1]
	frac := float64(admitted) / float64(sent)
	t.Logf("admitted %d of %d (%.2f)", admitted, sent, frac)
	// Half the incoming rate, with a generous band for a shared machine.
	if frac < 0.3 || frac > 0.75 {
		t.Fatalf("admitted %d of %d (%.2f), want about half", admitted, sent, frac)
	}
}

func TestLoadSchedulerSharesByPriority(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 0.3}}"))
	got := openLoop(e, 400, 1500*time.Millisecond, 500*time.Millisecond, "checkout", "browse")
	checkout := float64(got["checkout"][0]) / float64(got["checkout"][1])
	browse := float64(got["browse"][0]) / float64(got["browse"][1])
	t.Logf("admitted: checkout %.2f, browse %.2f", checkout, browse)
	if checkout <= browse {
		t.Fatalf("checkout (priority 2: weight 3) admitted %.2f, browse (priority 0: weight 1) %.2f: want checkout ahead", checkout, browse)
	}
	if got["browse"][0] == 0 {
		t.Fatal("the low-priority workload starved")
	}
}

func TestLoadSchedulerPassesThroughWithoutAMultiplier(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{signal_name: LOAD_MULTIPLIER}"))
	for i := 0; i < 200; i++ {
		var d Decision
		e.Check(context.Background(), time.Now(), &Request{ControlPoint: "api"}, &d)
		if !d.Accepted || !d.Limiters[0].PassThrough || d.Limiters[0].ComponentType != "load_scheduler" {
			t.Fatalf("flow %d = %+v", i, d)
		}
	}
}

// When capacity frees up (the circuit raises the multiplier), the
// low-priority workload is admitted again: saturation never starves it for
// good.
func TestLoadSchedulerLowPriorityRecovers(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{signal_name: LOAD_MULTIPLIER}"))
	key := policies.Key{Namespace: "default", Name: "protect"}
	if err := e.SetComponentInput(key, 0, "load_multiplier", 0.3); err != nil {
		t.Fatal(err)
	}
	saturated := openLoop(e, 400, 1200*time.Millisecond, 400*time.Millisecond, "checkout", "browse")
	if err := e.SetComponentInput(key, 0, "load_multiplier", 1.2); err != nil {
		t.Fatal(err)
	}
	freed := openLoop(e, 400, 1200*time.Millisecond, 400*time.Millisecond, "checkout", "browse")
	share := func(c [2]int) float64 { return float64(c[0]) / float64(c[1]) }
	t.Logf("browse admitted %.2f while saturated, %.2f after capacity freed up (checkout %.2f, %.2f)",
		share(saturated["browse"]), share(freed["browse"]), share(saturated["checkout"]), share(freed["checkout"]))
	if share(freed["browse"]) < 0.95 {
		t.Fatalf("browse admitted %.2f after capacity freed up, want nearly all", share(freed["browse"]))
	}
	if share(saturated["browse"]) >= share(freed["browse"]) {
		t.Fatal("the multiplier of 0.3 did not limit browse while saturated")
	}
}

// A sequential client at 19.6 flows/s (test/protect's warm-up on the
// 5 × 50 ms plant): the first rate the load scheduler derives, 1.2 × 19.6
// = 23.5/s, starts with a full bucket, so the flow that sets it is
// admitted at once. (It found the bucket empty and, with its 20 ms
// queue_timeout shorter than the 42.5 ms until the first token, was
// rejected.) Each flow's context leaves it no time to wait, so only a
// token already in the bucket admits it.
func TestLoadSchedulerFirstRateStartsWithTokens(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 1.2}}"))
	t0 := time.Now()
	for i := range 3 { // at 0, 51 and 102 ms: the last one sets the rate
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Millisecond))
		var d Decision
		e.Check(ctx, t0.Add(time.Duration(i)*51*time.Millisecond), &Request{ControlPoint: "api"}, &d)
		cancel()
		if !d.Accepted {
			t.Fatalf("flow %d rejected (%+v), want admitted from the bucket", i, d.Limiters)
		}
		if i == 2 && (d.Limiters[0].PassThrough || d.Limiters[0].Limit < 23 || d.Limiters[0].Limit > 24) {
			t.Fatalf("flow %d: %+v, want a rate of about 23.5/s", i, d.Limiters[0])
		}
	}
}

// every returns the offsets from..from+d (exclusive) at one flow per step.
func every(step, from, d time.Duration) []time.Duration {
	var at []time.Duration
	for t := from; t < from+d; t += step {
		at = append(at, t)
	}
	return at
}

// limitsAt sends one flow at each offset from t0 (a fake clock: the
// engine's now) and returns the load scheduler's limit as each flow saw
// it. No flow waits in real time: its context leaves none.
func limitsAt(e *Engine, t0 time.Time, at []time.Duration) []float64 {
	limits := make([]float64, 0, len(at))
	for _, d := range at {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Millisecond))
		var dec Decision
		e.Check(ctx, t0.Add(d), &Request{ControlPoint: "api"}, &dec)
		cancel()
		limits = append(limits, dec.Limiters[0].Limit)
	}
	return limits
}

// A lull is not a reading of the incoming rate. Flows at 100/s, a pause,
// then 100/s again: the flows after the pause are admitted at
// 1.2 × 100/s, what the multiplier allows, from the first one on. (The
// window that spanned the pause read its few flows over the whole pause,
// halved the estimate, and the first 100–300 ms after it admitted less
// than arrived: test/protect's 0.4–0.5 % rejected in its first base
// phase, after a pause of about 150 ms between its warm-up and driver.)
func TestLoadSchedulerKeepsItsRateAcrossALull(t *testing.T) {
	for _, pause := range []time.Duration{150 * time.Millisecond, 5 * time.Second} {
		t.Run(pause.String(), func(t *testing.T) {
			e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 1.2}}"))
			t0 := time.Now()
			before := limitsAt(e, t0, every(10*time.Millisecond, 0, time.Second))
			if got := before[len(before)-1]; got < 119.9 || got > 120.1 {
				t.Fatalf("limit %.1f at 100 flows/s before the pause, want 120", got)
			}
			after := limitsAt(e, t0, every(10*time.Millisecond, 990*time.Millisecond+pause, 500*time.Millisecond))
			for i, l := range after {
				if l < 119.9 {
					t.Fatalf("flow %d after a pause of %s: limit %.1f, want 1.2 × 100 = 120 (limits after the pause: %.0f)", i, pause, l, after)
				}
			}
		})
	}
}

// The bound on what a lull lets through: after a lull the limit stays what
// it was before it (1.2 × 100/s: not unlimited, not more) until the first
// window of the new flows closes (100 ms), and from then on it is 1.2 ×
// their rate in full, as the multiplier says.
func TestLoadSchedulerFollowsALoadThatRisesAfterALull(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 1.2}}"))
	t0 := time.Now()
	limitsAt(e, t0, every(10*time.Millisecond, 0, time.Second))
	resume := 6 * time.Second
	at := every(time.Second/300, resume, 400*time.Millisecond)
	limits := limitsAt(e, t0, at)
	for i, l := range limits {
		want := 360.0
		if at[i]-resume < 100*time.Millisecond {
			want = 120 // the first window: the rate before the lull
		}
		if l < want-0.5 || l > want+0.5 {
			t.Fatalf("flow %d, %s after a 5 s lull, at 300 flows/s: limit %.1f, want %.0f", i, at[i]-resume, l, want)
		}
	}
}

// Flows that pass through while the multiplier is invalid (before the
// circuit's first tick) still count as arrivals: the first limit after
// the multiplier turns valid is 1.2 × their rate, not a share of an
// estimate that read nothing.
func TestLoadSchedulerCountsFlowsItPassesThrough(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(loadSchedulerPolicy, "{signal_name: LOAD_MULTIPLIER}"))
	t0 := time.Now()
	limitsAt(e, t0, every(10*time.Millisecond, 0, time.Second))
	key := policies.Key{Namespace: "default", Name: "protect"}
	if err := e.SetComponentInput(key, 0, "load_multiplier", 1.2); err != nil {
		t.Fatal(err)
	}
	limits := limitsAt(e, t0, every(10*time.Millisecond, time.Second, 300*time.Millisecond))
	limited := 0
	for i, l := range limits {
		if math.IsInf(l, 1) {
			continue // until the next rate update
		}
		limited++
		if l < 119.9 || l > 120.1 {
			t.Fatalf("flow %d after the multiplier turned valid: limit %.1f, want 1.2 × 100 = 120 (%.0f)", i, l, limits)
		}
	}
	if limited == 0 {
		t.Fatalf("no limit within 300 ms of a valid multiplier: %v", limits)
	}
}
