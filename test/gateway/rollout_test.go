package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/blueprints"
	"github.com/fluxgate/fluxgate/gateway"
)

// rolloutValues are the canary-rollout values of the end-to-end test:
// the required ones, with short intervals so that it runs in seconds.
const rolloutValues = `policy_name: %[1]s
route_id: %[1]s
steps: [5, 25, 50, 100]
step_interval: 2s
evaluation_interval: 100ms
analysis: {interval: 1s, window: 4s, min_samples: 20}
`

// flaky is an upstream that answers 200, or 500 to every other request
// while failing.
type flaky struct {
	srv     *httptest.Server
	failing atomic.Bool
	n       atomic.Int64
}

func newFlaky(t *testing.T) *flaky {
	f := &flaky{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.failing.Load() && f.n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flaky) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// openLoop sends rps GETs per second to url, each on its own goroutine,
// paced by the clock rather than by answers, until ctx ends.
func openLoop(ctx context.Context, wg *sync.WaitGroup, hc *http.Client, url string, rps int) {
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Go(func() {
				resp, err := hc.Get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	})
}

// seen is a canary weight first seen at a time since the test began.
type seen struct {
	at     time.Duration
	weight int
}

func (s seen) String() string { return fmt.Sprintf("%d%% at %v", s.weight, s.at) }

// TestCanaryRollout runs the canary-rollout blueprint, given only its
// required values and short intervals, against three routes of a real
// gateway under open-loop load, each with a real primary and canary
// upstream:
//   - healthy (200 requests/s, no errors): the weight goes 5 → 25 → 50 →
//     100, each step in order;
//   - failing (200 requests/s): once the rollout has advanced, the canary
//     fails half of its requests, and the weight goes to 0 and stays there;
//   - quiet (2 requests/s): the canary never has min_samples requests in
//     the window, so it never advances past its first step, and is never
//     rolled back either.
//
// The policy is the judge: the gateway's fluxgate_canary_weight and the
// circuit's CANARY_WEIGHT agree, and VERDICT is 1, -1 and 0.
func TestCanaryRollout(t *testing.T) {
	routes := []string{"healthy", "failing", "quiet"}
	ups := map[string][2]*flaky{}
	cfg := gateway.Config{}
	files := map[string]string{}
	b, err := blueprints.Lookup("canary-rollout")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		p, c := newFlaky(t), newFlaky(t)
		ups[r] = [2]*flaky{p, c}
		cfg.Upstreams = append(cfg.Upstreams,
			gateway.UpstreamConfig{Name: r, Targets: []gateway.TargetConfig{{Address: p.addr()}}},
			gateway.UpstreamConfig{Name: r + "-v2", Targets: []gateway.TargetConfig{{Address: c.addr()}}})
		cfg.Routes = append(cfg.Routes, gateway.RouteConfig{ID: r, Match: gateway.RouteMatch{PathPrefix: "/" + r}, Upstream: r,
			Canary: &gateway.CanaryConfig{Upstream: r + "-v2"}})
		out, err := b.Generate(r+"-values.yaml", fmt.Appendf(nil, rolloutValues, r))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range out.Files {
			if f.Name == r+".yaml" {
				files[f.Name] = string(f.Data)
			}
		}
	}
	s := startStack(t, cfg, files, gateway.ServiceOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for r, rps := range map[string]int{"healthy": 200, "failing": 200, "quiet": 2} {
		openLoop(ctx, &wg, s.hc, s.url+"/"+r, rps)
	}

	// Watch every route's effective weight every 20ms.
	var mu sync.Mutex
	history := map[string][]seen{}
	begin := time.Now()
	weight := func(r string) int {
		for _, cs := range s.gw.Canaries() {
			if cs.Route == r {
				return cs.Weight
			}
		}
		t.Fatalf("no canary on route %s", r)
		return -1
	}
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			mu.Lock()
			for _, r := range routes {
				w := weight(r)
				if h := history[r]; len(h) == 0 || h[len(h)-1].weight != w {
					history[r] = append(h, seen{time.Since(begin).Round(10 * time.Millisecond), w})
				}
			}
			mu.Unlock()
		}
	})
	last := func(r string) int {
		mu.Lock()
		defer mu.Unlock()
		h := history[r]
		if len(h) == 0 {
			return -1
		}
		return h[len(h)-1].weight
	}

	// The failing route's canary breaks once its rollout has advanced.
	if _, ok := waitFor(30*time.Second, func() bool { return last("failing") >= 25 }); !ok {
		t.Fatalf("the failing route's rollout never advanced to 25%%: %v", history["failing"])
	}
	ups["failing"][1].failing.Store(true)
	took, ok := waitFor(20*time.Second, func() bool { return last("failing") == 0 })
	if !ok {
		t.Fatalf("the canary failing half of its requests was not rolled back within 20s: %v", history["failing"])
	}
	t.Logf("failing canary: rolled back to 0 %v after the breach (analysis interval 1s, window 4s, scrape 1s)", took.Round(10*time.Millisecond))
	// Generous for a loaded machine: two analysis intervals plus a scrape
	// and the window's lag are about 3s.
	if took > 10*time.Second {
		t.Errorf("rollback took %v, want within 10s", took)
	}

	if _, ok := waitFor(40*time.Second, func() bool { return last("healthy") == 100 }); !ok {
		t.Errorf("the healthy canary did not reach 100%%: %v", history["healthy"])
	}
	time.Sleep(2 * time.Second) // the rolled-back canary stays at 0
	cancel()

	mu.Lock()
	defer mu.Unlock()
	for _, r := range routes {
		t.Logf("%s: weight over time %v", r, history[r])
	}
	// The generator moves from one step to the next in one circuit tick; a
	// late tick may show a weight in between.
	var steps []int
	for i, h := range history["healthy"] {
		if i > 0 && h.weight < history["healthy"][i-1].weight {
			t.Errorf("healthy canary weight went down: %v", history["healthy"])
		}
		if slices.Contains([]int{5, 25, 50, 100}, h.weight) {
			steps = append(steps, h.weight)
		}
	}
	if want := []int{5, 25, 50, 100}; !slices.Equal(steps, want) {
		t.Errorf("healthy canary weights %v, want the steps %v in order", steps, want)
	}
	if h := history["failing"]; h[len(h)-1].weight != 0 {
		t.Errorf("failing canary came back after its rollback: %v", h)
	}
	for _, h := range history["quiet"] {
		if h.weight > 5 {
			t.Errorf("quiet canary (2 requests/s) advanced to %d%% at %v: %v", h.weight, h.at, history["quiet"])
		}
	}
	if h := history["quiet"]; h[len(h)-1].weight != 5 {
		t.Errorf("quiet canary ended at %d%%, want held at its first step, 5%%", h[len(h)-1].weight)
	}

	// One source of truth: the circuit's weight is the gateway's, and the
	// circuit's verdict says why.
	for r, verdict := range map[string]float64{"healthy": 1, "failing": -1, "quiet": 0} {
		signal := func(name string) float64 {
			return gauge(t, s.reg, "signal_reading", map[string]string{"policy_name": r, "signal_name": name})
		}
		gw := gauge(t, s.reg, "fluxgate_canary_weight", map[string]string{"route_id": r})
		if cw := signal("CANARY_WEIGHT"); cw != gw {
			t.Errorf("%s: circuit CANARY_WEIGHT %v, gateway fluxgate_canary_weight %v", r, cw, gw)
		}
		if v := signal("VERDICT"); v != verdict {
			t.Errorf("%s: VERDICT %v, want %v (ERROR_RATIO %v)", r, v, verdict, signal("ERROR_RATIO"))
		}
	}
}
