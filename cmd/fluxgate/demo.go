package main

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/blueprints"
	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/policies"
)

func newDemoCmd() *cobra.Command {
	var duration time.Duration
	var rps int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch the whole loop on one machine: gateway, agent, a degrading upstream, load, service protection",
		Long: "demo starts the agent and the built-in gateway on loopback ports, a synthetic checkout\n" +
			"upstream that completes 200 requests/s and loses three of its four workers (50/s) a third\n" + "of the way in,\n" +
			"and a load generator offering --rps. The service-protection blueprint at its defaults (an\n" +
			"adaptive concurrency limit learned from each request's latency, in the gateway's data path)\n" +
			"sheds what the upstream cannot serve. Every second it prints what was offered, served and\n" +
			"shed, the latency clients saw, and the limit. It stops by itself after --duration and exits 1\n" +
			"unless the overloaded upstream is kept serving: at least 70% of its capacity within 100 ms.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runDemo(cmd.Context(), cmd.OutOrStdout(), duration, rps)
			if err != nil {
				return err
			}
			if !res.shed {
				return &exitError{code: 1, err: fmt.Errorf("demo: admission did not drop under overload")}
			}
			if res.goodput < demoMinGoodput {
				return &exitError{code: 1, err: fmt.Errorf("demo: the overloaded upstream served %.0f%% of its capacity within 100 ms, want at least %.0f%%", 100*res.goodput, 100*demoMinGoodput)}
			}
			if !res.canaryRolledBack {
				return &exitError{code: 1, err: fmt.Errorf("demo: the failing canary was not rolled back")}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 60*time.Second, "how long the demo runs (at least 15s)")
	cmd.Flags().IntVar(&rps, "rps", 150, "requests per second the load generator offers")
	return cmd
}

// demoCanaryPolicy generates the canary-rollout blueprint for route
// checkout with only its required values and the steps: 10% then 25% a
// step later. The blueprint's analysis (the route's canary requests over
// 30s, every 5s, judged once there are 50) rolls the canary back to 0
// once its error ratio passes 5%.
func demoCanaryPolicy(step time.Duration) ([]byte, error) {
	b, err := blueprints.Lookup("canary-rollout")
	if err != nil {
		return nil, err
	}
	values := fmt.Sprintf("policy_name: checkout-canary\nroute_id: checkout\nsteps: [10, 25]\nstep_interval: %s\n", step)
	out, err := b.Generate("demo-canary-values.yaml", []byte(values))
	if err != nil {
		return nil, err
	}
	for _, f := range out.Files {
		if f.Name == "checkout-canary.yaml" {
			return f.Data, nil
		}
	}
	return nil, fmt.Errorf("canary-rollout wrote no checkout-canary.yaml")
}

// demoPolicy generates the service-protection blueprint with nothing but
// its required values, protecting every flow at the gateway's ingress
// control point.
func demoPolicy() ([]byte, error) {
	b, err := blueprints.Lookup("service-protection")
	if err != nil {
		return nil, err
	}
	out, err := b.Generate("demo-protection-values.yaml", []byte("policy_name: service-protection\nselectors: [{control_point: ingress}]\n"))
	if err != nil {
		return nil, err
	}
	for _, f := range out.Files {
		if f.Name == "service-protection.yaml" {
			return f.Data, nil
		}
	}
	return nil, fmt.Errorf("service-protection wrote no service-protection.yaml")
}

// The degraded upstream's capacity, and what the demo asks of it: served
// within demoGoodLatency (5 × its 20 ms service time), at least
// demoMinGoodput of its capacity, each second of the last third.
const (
	demoDegradedCapacity = 50
	demoGoodLatency      = 100 * time.Millisecond
	demoMinGoodput       = 0.7
)

// upstream is a synthetic service: workers serve one request at a time in
// serviceTime; requests beyond the workers wait, so latency grows when it
// is given more than workers/serviceTime per second.
type upstream struct {
	workers     chan struct{}
	serviceTime atomic.Int64 // nanoseconds
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		return
	}
	select {
	case u.workers <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	time.Sleep(time.Duration(u.serviceTime.Load()))
	<-u.workers
	_, _ = io.WriteString(w, "ok\n")
}

// canaryUpstream is checkout-v2: fast, until it starts failing half of
// its requests.
type canaryUpstream struct{ failing atomic.Bool }

func (c *canaryUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/healthz" && c.failing.Load() && rand.IntN(2) == 0 {
		http.Error(w, "checkout-v2 is broken", http.StatusInternalServerError)
		return
	}
	time.Sleep(5 * time.Millisecond)
	_, _ = io.WriteString(w, "ok from v2\n")
}

type demoResult struct {
	shed                   bool
	goodput                float64 // served within demoGoodLatency per second in the last third, / capacity
	canaryWeight           int     // at the end
	canaryRolledBack       bool    // at the end
	admittedEarly, lateAdm float64 // share of offered flows admitted before and during the overload
}

type second struct {
	offered, ok, good, shed, failed int
	latencies                       []time.Duration
}

func runDemo(ctx context.Context, out io.Writer, d time.Duration, rps int) (demoResult, error) {
	if d < 15*time.Second {
		return demoResult{}, fmt.Errorf("--duration must be at least 15s")
	}
	if rps <= 0 || rps > 2000 {
		return demoResult{}, fmt.Errorf("--rps must be within 1..2000")
	}
	phase := d / 3
	up := &upstream{workers: make(chan struct{}, 4)}
	up.serviceTime.Store(int64(20 * time.Millisecond)) // 4 workers / 20 ms = 200 requests/s
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return demoResult{}, err
	}
	upSrv := &http.Server{Handler: up, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upSrv.Serve(upLn) }()
	defer func() { _ = upSrv.Close() }()
	canary := &canaryUpstream{}
	canLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return demoResult{}, err
	}
	canSrv := &http.Server{Handler: canary, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = canSrv.Serve(canLn) }()
	defer func() { _ = canSrv.Close() }()

	dir, err := os.MkdirTemp("", "fluxgate-demo-")
	if err != nil {
		return demoResult{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	policy, err := demoPolicy()
	if err != nil {
		return demoResult{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		return demoResult{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "service-protection.yaml"), policy, 0o644); err != nil {
		return demoResult{}, err
	}
	canaryPolicy, err := demoCanaryPolicy(max(phase/2, 5*time.Second)) // at least the analysis interval
	if err != nil {
		return demoResult{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "checkout-canary.yaml"), canaryPolicy, 0o644); err != nil {
		return demoResult{}, err
	}
	// The admin API is off without a token; the demo makes one up, so that
	// the fluxctl command it prints works.
	token := crand.Text()
	conf := fmt.Sprintf(`server: {host: 127.0.0.1, http_port: 0, grpc_port: 0}
admin: {token: %q}
metrics: {port: 0}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %q}
log: {level: warn}
gateway:
  listen: 127.0.0.1:0
  upstreams:
    - name: checkout
      targets: [{address: %q}]
    - name: checkout-v2
      targets: [{address: %q}]
  routes:
    - id: checkout
      match: {path_prefix: /checkout}
      upstream: checkout
      control_point: ingress
      canary:
        upstream: checkout-v2
        weight: 10
`, token, filepath.Join(dir, "policies"), upLn.Addr().String(), canLn.Addr().String())
	confPath := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return demoResult{}, err
	}
	f, _, err := fluxgate.Load(confPath, nil)
	if err != nil {
		return demoResult{}, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(agent.Options{Config: f.Config, Logger: logger, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		return demoResult{}, err
	}
	gw := gateway.NewService(fluxgate.GatewayHost(a), f.Gateway, logger)
	if err := a.Start(ctx); err != nil {
		return demoResult{}, err
	}
	defer func() { _ = a.Stop(context.Background()) }()
	if err := gw.Start(ctx); err != nil {
		return demoResult{}, err
	}
	defer func() { _ = gw.Stop(context.Background()) }()
	target := "http://" + gw.Addr().String() + "/checkout"

	fmt.Fprintf(out, "FluxGate demo: %d requests/s offered to a checkout service of 200/s for %v, which degrades to 50/s at %v.\n", rps, d, phase.Round(time.Second))
	fmt.Fprintf(out, "A canary, checkout-v2, gets 10%% of the traffic and starts failing half of its requests at %v; the canary-rollout policy rolls it back.\n", (phase / 2).Round(time.Second))
	fmt.Fprintf(out, "gateway %s, agent API http://%s (try: FLUXCTL_TOKEN=%s fluxctl --agent http://%s signals checkout-canary)\n\n",
		gw.Addr(), a.Addr(agent.ListenerHTTP), token, a.Addr(agent.ListenerHTTP))

	var mu sync.Mutex
	stats := map[int]*second{}
	record := func(sec int, f func(*second)) {
		mu.Lock()
		s := stats[sec]
		if s == nil {
			s = &second{}
			stats[sec] = s
		}
		f(s)
		mu.Unlock()
	}
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	start := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the load generator: open loop at rps
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			record(int(time.Since(start)/time.Second), func(s *second) { s.offered++ })
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(runCtx, http.MethodGet, target, nil)
				resp, err := httpc.Do(req)
				lat := time.Since(t0)
				// Outcomes count in the second they arrive, as a client sees them.
				record(int(time.Since(start)/time.Second), func(s *second) {
					switch {
					case err != nil:
						s.failed++
					case resp.StatusCode == http.StatusOK:
						s.ok++
						s.latencies = append(s.latencies, lat)
						if lat <= demoGoodLatency {
							s.good++
						}
					case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
						s.shed++
					default:
						s.failed++
					}
				})
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}()
		}
	}()

	const rowFormat = "%4s %9s %8s %8s %6s %7s %8s %6s %10s %12s %8s\n"
	fmt.Fprintf(out, rowFormat, "t", "upstream", "offered", "served", "shed", "failed", "p95 ms", "limit", "in flight", "no-load ms", "canary")
	canaryState := func() (string, gateway.CanaryStatus) {
		for _, c := range gw.Gateway().Canaries() {
			if c.Route == "checkout" {
				return fmt.Sprintf("%d%%", c.Weight), c
			}
		}
		return "-", gateway.CanaryStatus{}
	}
	canaryKey := policies.Key{Namespace: "default", Name: "checkout-canary"}
	signalOf := func(key policies.Key, name string) string {
		readings, _ := a.Circuits().Signals(key)
		for _, r := range readings {
			if r.Name == name && r.Valid {
				return fmt.Sprintf("%.3g", r.Value)
			}
		}
		return "-"
	}
	limiter := func(metric string, scale float64) string {
		mfs, _ := a.Registry().Gather()
		for _, mf := range mfs {
			if mf.GetName() == metric && len(mf.GetMetric()) > 0 {
				return fmt.Sprintf("%.3g", scale*mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
		return "-"
	}
	degraded := false
	var early, late [2]int // admitted, offered
	var lateSeconds, lateGood int
	for sec := 1; time.Since(start) < d; sec++ {
		time.Sleep(time.Until(start.Add(time.Duration(sec) * time.Second)))
		if time.Since(start) >= phase/2 {
			canary.failing.Store(true)
		}
		if !degraded && time.Since(start) >= phase {
			// Three of the four workers go away (their slots are taken
			// for good): 1 worker / 20 ms = 50 requests/s, latency
			// unchanged when not queueing.
			go func() {
				for i := 0; i < 3; i++ {
					up.workers <- struct{}{}
				}
			}()
			degraded = true
		}
		mu.Lock()
		s := stats[sec-1]
		if s == nil {
			s = &second{}
		}
		row := *s
		mu.Unlock()
		state := "200/s"
		if degraded {
			state = "50/s"
		}
		cw, _ := canaryState()
		fmt.Fprintf(out, rowFormat, fmt.Sprintf("%ds", sec-1), state, fmt.Sprint(row.offered), fmt.Sprint(row.ok), fmt.Sprint(row.shed), fmt.Sprint(row.failed),
			p95(row.latencies), limiter("fluxgate_adaptive_concurrency_limit", 1), limiter("fluxgate_adaptive_concurrency_in_flight", 1),
			limiter("fluxgate_adaptive_concurrency_no_load_latency_seconds", 1000), cw)
		switch {
		case time.Duration(sec)*time.Second <= phase:
			early[0] += row.ok
			early[1] += row.offered
		case time.Duration(sec)*time.Second > d-phase:
			late[0] += row.ok
			late[1] += row.offered
			lateSeconds++
			lateGood += row.good
		}
	}
	cancel()
	wg.Wait()
	res := demoResult{admittedEarly: share(early), lateAdm: share(late)}
	if lateSeconds > 0 {
		res.goodput = float64(lateGood) / float64(lateSeconds) / demoDegradedCapacity
	}
	res.shed = res.lateAdm < res.admittedEarly*0.8
	_, cs := canaryState()
	res.canaryWeight = cs.Weight
	res.canaryRolledBack = signalOf(canaryKey, "ROLLED_BACK") == "1"
	fmt.Fprintf(out, "\nserved %.0f%% of the offered flows while the upstream kept up, %.0f%% in the last third of its overload (the rest shed at the gateway, not queued at the upstream);\n",
		100*res.admittedEarly, 100*res.lateAdm)
	fmt.Fprintf(out, "there the upstream served %.0f%% of its capacity (%d/s) within %v.\n", 100*res.goodput, demoDegradedCapacity, demoGoodLatency)
	fmt.Fprintf(out, "the canary ended at %d%% (canary-rollout policy rolled it back: %v; error ratio %s).\n",
		cs.Weight, res.canaryRolledBack, signalOf(canaryKey, "ERROR_RATIO"))
	return res, nil
}

func share(x [2]int) float64 {
	if x[1] == 0 {
		return 0
	}
	return float64(x[0]) / float64(x[1])
}

func p95(l []time.Duration) string {
	if len(l) == 0 {
		return "-"
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return fmt.Sprintf("%.0f", float64(l[len(l)*95/100])/1e6)
}
