package main

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/fluxgate/fluxgate/circuit/sim"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/concurrency"
	"github.com/fluxgate/fluxgate/policies"
)

// inPathColumns are the columns of an in-path simulation, one row per
// second: the limiter's state at the end of the second, then the plant.
var inPathColumns = []string{
	"time_s", "limiter.limit", "limiter.no_load_ms", "limiter.in_flight",
	"plant.offered_rps", "plant.admitted_rps", "plant.rejected_rps", "plant.goodput_rps",
	"plant.p50_ms", "plant.p99_ms", "plant.queue",
}

// adaptiveComponent is pol's flow_control.adaptive_concurrency component,
// nil when it has none.
func adaptiveComponent(pol *policies.Policy) (*policies.AdaptiveConcurrency, error) {
	var found *policies.AdaptiveConcurrency
	for _, c := range pol.Spec.Circuit.Components {
		if ac, ok := c.Spec.(*policies.AdaptiveConcurrency); ok {
			if found != nil {
				return nil, errors.New("sim: the policy has more than one adaptive_concurrency component; simulate one at a time")
			}
			found = ac
		}
	}
	if found == nil {
		return nil, nil
	}
	in := found.InPorts
	if in.LatencyObjectiveMs != nil || in.MinConcurrency != nil || in.MaxConcurrency != nil {
		return nil, errors.New("sim: adaptive_concurrency in_ports (a circuit steering the limiter) are not simulated; remove them to simulate the limiter at its parameters")
	}
	return found, nil
}

// simulateInPath runs the adaptive_concurrency limiter ac, as the engine
// builds it, against the plant request by request in virtual time (the
// data path's loop has no ticks): capacity × base_latency workers (at
// least one), each request taking workers / capacity, behind a FIFO queue,
// offered the plant's load evenly spaced. Latency counts from each
// request's intended send time.
func simulateInPath(ac *policies.AdaptiveConcurrency, p *sim.Plant) (*sim.Table, error) {
	workers := max(1, int(math.Round(p.Capacity*p.BaseLatency.Seconds())))
	if workers > 100_000 {
		return nil, fmt.Errorf("sim: capacity × base_latency is %d requests in service at once; the in-path simulation serves at most 100000", workers)
	}
	service := time.Duration(float64(workers) / p.Capacity * float64(time.Second))
	var phases []concurrency.SimPhase
	steps := p.Phases()
	for i, s := range steps {
		end := p.Duration
		if i+1 < len(steps) {
			end = steps[i+1].At
		}
		phases = append(phases, concurrency.SimPhase{Rate: s.RPS, Duration: end - s.At})
	}
	res := concurrency.Simulate(concurrency.New(controlpoint.AdaptiveLimiterOptions(ac.Parameters)),
		concurrency.SimPlant{Workers: workers, Service: service, Jitter: p.Jitter}, phases,
		concurrency.SimOptions{Good: p.GoodLatency})
	t := &sim.Table{Columns: inPathColumns}
	for i, s := range res.Seconds {
		t.Rows = append(t.Rows, []float64{
			float64(i), s.Limit, ms(s.NoLoad), float64(s.InFlight),
			float64(s.Offered), float64(s.Admitted), float64(s.Rejected), float64(s.Good),
			1000 * concurrency.Quantile(s.Latencies, 0.5), 1000 * concurrency.Quantile(s.Latencies, 0.99), float64(s.Queued),
		})
	}
	return t, nil
}

// ms is d in milliseconds, NaN for 0 (not known yet).
func ms(d time.Duration) float64 {
	if d == 0 {
		return math.NaN()
	}
	return float64(d) / float64(time.Millisecond)
}
