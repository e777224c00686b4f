package controlpoint

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
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
