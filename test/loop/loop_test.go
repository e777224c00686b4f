// Package loop measures the adaptive control loop end to end in one agent:
// a simulated service reports its latency as flow spans, a flux meter
// turns them into histograms, the embedded TSDB stores them, the
// service-protection circuit reads them with PromQL every second and lowers
// the load scheduler's multiplier when the service is overloaded.
package loop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

// service is a simulated backend that completes capacity requests per
// second; what it is given beyond that queues.
type service struct {
	mu       sync.Mutex
	capacity float64
	base     time.Duration
	backlog  float64
	last     time.Time
}

// serve admits one request and returns its latency.
func (s *service) serve(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() {
		s.backlog = max(0, s.backlog-now.Sub(s.last).Seconds()*s.capacity)
	}
	s.last = now
	s.backlog++
	return s.base + time.Duration(s.backlog/s.capacity*float64(time.Second))
}

// spans batches flow spans and posts them to the agent's OTLP/HTTP port.
type spans struct {
	mu   sync.Mutex
	url  string
	buf  []string
	sent int
}

func (s *spans) add(ms float64, accepted bool) {
	decision := "DECISION_TYPE_ACCEPTED"
	if !accepted {
		decision = "DECISION_TYPE_REJECTED"
	}
	s.mu.Lock()
	s.buf = append(s.buf, fmt.Sprintf(`{"name":"checkout","attributes":[`+
		`{"key":"fluxgate.control_point","value":{"stringValue":"ingress"}},`+
		`{"key":"service","value":{"stringValue":"checkout"}},`+
		`{"key":"fluxgate.decision_type","value":{"stringValue":%q}},`+
		`{"key":"workload_duration_ms","value":{"doubleValue":%g}}]}`, decision, ms))
	s.mu.Unlock()
}

func (s *spans) flush(t *testing.T) {
	s.mu.Lock()
	batch := s.buf
	s.buf = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	body := `{"resourceSpans":[{"scopeSpans":[{"spans":[` + strings.Join(batch, ",") + `]}]}]}`
	resp, err := http.Post(s.url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	_ = resp.Body.Close()
	s.sent += len(batch)
}

// TestReactionToOverload runs the service-protection example (the
// blueprint's loop: flux_meter, its EMA warm-up shortened to 5 s so the
// test is short) with the agent's defaults: 1 s ticks, 1 s TSDB scrapes,
// 1 s PromQL evaluation; flows' spans leave when the flows end. It reports
// how long after the onset of a 3× overload the load scheduler starts
// admitting less, and checks that it does not starve the service later.
func TestReactionToOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20-second end-to-end run")
	}
	example, err := os.ReadFile("../../policies/examples/service-protection.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.Replace(string(example), "warmup_window: 10s", "warmup_window: 5s", 1)
	a := agenttest.Start(t, agenttest.Config(t, policy))
	ctx := context.Background()

	checker := controlpoint.NewLocalChecker(a.Engine())
	svc := &service{capacity: 100, base: 20 * time.Millisecond}
	out := &spans{url: "http://" + a.Addr(agent.ListenerOTLPHTTP).String() + "/v1/traces"}
	key := policies.Key{Namespace: "default", Name: "service-protection"}
	multiplier := func() (float64, bool) {
		readings, ok := a.Circuits().Signals(key)
		if !ok {
			return 0, false
		}
		for _, r := range readings {
			if r.Name == "MULTIPLIER" {
				return r.Value, r.Valid
			}
		}
		return 0, false
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var admissions []time.Time
	offered := func(rps int, d time.Duration) (admitted, sent int) {
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		end := time.Now().Add(d)
		lastFlush := time.Now()
		for now := range tick.C {
			if now.After(end) {
				break
			}
			{
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					defer cancel()
					var d flow.Decision
					err := checker.Check(cctx, &flow.Request{ControlPoint: "ingress", Labels: map[string]string{"service": "checkout", "http.target": "/checkout"}}, &d)
					if err != nil {
						t.Error(err)
						return
					}
					ok := d.Accepted
					if ok {
						// The flow's span leaves when the flow ends, as a
						// real one does: latency is known only then.
						lat := svc.serve(time.Now())
						time.AfterFunc(lat, func() { out.add(float64(lat)/1e6, true) })
					}
					mu.Lock()
					sent++
					if ok {
						admitted++
						admissions = append(admissions, time.Now())
					}
					mu.Unlock()
				}()
			}
			if now.Sub(lastFlush) >= 100*time.Millisecond {
				out.flush(t)
				lastFlush = now
			}
		}
		return admitted, sent
	}

	// Warm up at half the capacity: the baseline learns 20 ms.
	offered(50, 8*time.Second)
	before, _ := multiplier()
	const hold = 20 * time.Second
	onset := time.Now()
	// 3× overload: watch for the multiplier to drop.
	var reaction time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for time.Since(onset) < hold {
			if os.Getenv("LOOP_TRACE") != "" { // LOOP_TRACE=1 go test -v ./test/loop: the signals as they move
				readings, _ := a.Circuits().Signals(key)
				var b strings.Builder
				for _, r := range readings {
					fmt.Fprintf(&b, " %s=%.3g", r.Name, r.Value)
				}
				t.Logf("%v%s", time.Since(onset).Round(100*time.Millisecond), b.String())
			}
			if m, ok := multiplier(); ok && m < before {
				reaction = time.Since(onset)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	admitted, sent := offered(300, hold)
	<-done
	wg.Wait()
	out.flush(t)
	// The end of the overload: the backlog the loop saw late drains, and
	// admission must not fall below what the service completes: the
	// blueprint keeps at least half of its completion rate (100/s).
	mu.Lock()
	late := 0
	for _, at := range admissions {
		if at.After(onset.Add(hold - 6*time.Second)) {
			late++
		}
	}
	mu.Unlock()
	if rate := float64(late) / 6; rate < 35 {
		t.Errorf("admitted %.0f/s in the last 6 s of the overload, want at least 35/s: the loop starves a service that completes 100/s", rate)
	}
	if reaction == 0 {
		t.Fatalf("the multiplier (%v before the overload) never dropped", before)
	}
	m, _ := multiplier()
	t.Logf("reaction: the multiplier fell from %.2f %v after the onset of a 3× overload; during the overload %d of %d flows were admitted (%.0f/s against a capacity of 100/s); multiplier now %.2f",
		before, reaction.Round(10*time.Millisecond), admitted, sent, float64(admitted)/hold.Seconds(), m)
	if reaction > 10*time.Second {
		t.Errorf("reaction took %v", reaction)
	}
	stats, _ := json.Marshal(map[string]any{"reaction_ms": reaction.Milliseconds()})
	t.Log(string(stats))
}
