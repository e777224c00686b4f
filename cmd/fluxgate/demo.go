package main

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
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
			"upstream that completes 200 requests/s and loses three of its four workers (50/s) a third\n" +
			"of the way in, and a load generator offering --rps. The service-protection blueprint at its\n" +
			"defaults (an adaptive concurrency limit learned from each request's latency, in the gateway's\n" +
			"data path) sheds what the upstream cannot serve. Every second it prints what was offered, served and\n" +
			"shed, the latency clients saw, and the limit. It stops by itself after --duration and exits 1\n" +
			"unless the overloaded upstream is kept serving: at least 70% of its capacity within 100 ms.\n" +
			"Ctrl-C stops it early, every part and its temporary files, with exit status 130.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Ctrl-C stops the load and every part of the demo and removes
			// its temporary files (without this, SIGINT killed the process
			// mid-run and left them behind).
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := runDemo(ctx, cmd.OutOrStdout(), duration, rps)
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

// demoConfig is the demo's fluxgate.yaml: every port free on loopback, the
// admin token, the policies directory, and a gateway routing /checkout to
// the checkout upstream with checkout-v2 as its canary at 10%. Its verbs
// take the token, the policies directory and the two upstreams' addresses.
const demoConfig = `server: {host: 127.0.0.1, http_port: 0, grpc_port: 0}
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
`

// demoRowFormat lays out the table printed once a second.
const demoRowFormat = "%4s %9s %8s %8s %6s %7s %8s %6s %10s %12s %8s\n"

// demoCanaryKey names the canary-rollout policy demoCanaryPolicy generates.
var demoCanaryKey = policies.Key{Namespace: "default", Name: "checkout-canary"}

// runDemo runs the demo for d with rps offered, printing to out as it goes:
// it starts the upstreams, the agent and the gateway, generates load,
// degrades the upstream and breaks the canary on schedule, prints a row a
// second and a summary, and returns what it measured.
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
	upAddr, stopUp, err := serveLoopback(up)
	if err != nil {
		return demoResult{}, err
	}
	defer stopUp()
	canary := &canaryUpstream{}
	canaryAddr, stopCanary, err := serveLoopback(canary)
	if err != nil {
		return demoResult{}, err
	}
	defer stopCanary()

	dir, err := os.MkdirTemp("", "fluxgate-demo-")
	if err != nil {
		return demoResult{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	// The admin API is off without a token; the demo makes one up, so that
	// the fluxctl command it prints works.
	token := crand.Text()
	confPath, err := writeDemoConfig(dir, token, phase, upAddr, canaryAddr)
	if err != nil {
		return demoResult{}, err
	}
	stack, err := startDemoStack(ctx, confPath)
	if err != nil {
		return demoResult{}, err
	}
	defer stack.stop()

	fmt.Fprintf(out, "FluxGate demo: %d requests/s offered to a checkout service of 200/s for %v, which degrades to 50/s at %v.\n", rps, d, phase.Round(time.Second))
	fmt.Fprintf(out, "A canary, checkout-v2, gets 10%% of the traffic and starts failing half of its requests at %v; the canary-rollout policy rolls it back.\n", (phase / 2).Round(time.Second))
	agentAddr := stack.a.Addr(agent.ListenerHTTP)
	fmt.Fprintf(out, "gateway %s, agent API http://%s (try: FLUXCTL_TOKEN=%s fluxctl --agent http://%s signals checkout-canary)\n\n",
		stack.gw.Addr(), agentAddr, token, agentAddr)

	stats := &demoStats{start: time.Now(), secs: map[int]*second{}}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		generateLoad(runCtx, "http://"+stack.gw.Addr().String()+"/checkout", rps, stats)
	}()
	tally := watchDemo(ctx, out, d, phase, up, canary, stats, stack)
	cancel()
	<-loadDone
	if ctx.Err() != nil {
		fmt.Fprintf(out, "\ninterrupted after %v: the gateway, agent and upstreams stop.\n", time.Since(stats.start).Round(time.Second))
		return demoResult{}, &exitError{code: 130, err: errDemoInterrupted}
	}

	res := tally.result()
	_, cs := stack.canary()
	res.canaryWeight = cs.Weight
	res.canaryRolledBack = stack.signal(demoCanaryKey, "ROLLED_BACK") == "1"
	fmt.Fprintf(out, "\nserved %.0f%% of the offered flows while the upstream kept up, %.0f%% in the last third of its overload (the rest shed at the gateway, not queued at the upstream);\n",
		100*res.admittedEarly, 100*res.lateAdm)
	fmt.Fprintf(out, "there the upstream served %.0f%% of its capacity (%d/s) within %v.\n", 100*res.goodput, demoDegradedCapacity, demoGoodLatency)
	fmt.Fprintf(out, "the canary ended at %d%% (canary-rollout policy rolled it back: %v; error ratio %s).\n",
		cs.Weight, res.canaryRolledBack, stack.signal(demoCanaryKey, "ERROR_RATIO"))
	return res, nil
}

// errDemoInterrupted is runDemo's error when its context ends (Ctrl-C)
// before --duration.
var errDemoInterrupted = errors.New("demo: interrupted")

// serveLoopback serves h on a free 127.0.0.1 port until stop is called.
func serveLoopback(h http.Handler) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// writeDemoConfig writes the demo's files into dir: the service-protection
// policy, the checkout canary stepping every phase/2 (at least its 5s
// analysis interval), and fluxgate.yaml, whose path it returns.
func writeDemoConfig(dir, token string, phase time.Duration, upAddr, canaryAddr string) (string, error) {
	policyDir := filepath.Join(dir, "policies")
	policy, err := demoPolicy()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(policyDir, "service-protection.yaml"), policy, 0o644); err != nil {
		return "", err
	}
	canaryPolicy, err := demoCanaryPolicy(max(phase/2, 5*time.Second)) // at least the analysis interval
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(policyDir, "checkout-canary.yaml"), canaryPolicy, 0o644); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(demoConfig, token, policyDir, upAddr, canaryAddr)
	confPath := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", err
	}
	return confPath, nil
}

// demoStack is the agent and the built-in gateway the demo runs, and the
// live state it prints from them.
type demoStack struct {
	a  *agent.Agent
	gw *gateway.Service
}

// startDemoStack starts the agent and the gateway from the fluxgate.yaml
// at confPath, their logs discarded.
func startDemoStack(ctx context.Context, confPath string) (demoStack, error) {
	f, _, err := fluxgate.Load(confPath, nil)
	if err != nil {
		return demoStack{}, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(agent.Options{Config: f.Config, Logger: logger, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		return demoStack{}, err
	}
	gw := gateway.NewService(fluxgate.GatewayHost(a), f.Gateway, logger)
	if err := a.Start(ctx); err != nil {
		return demoStack{}, err
	}
	if err := gw.Start(ctx); err != nil {
		_ = a.Stop(context.Background())
		return demoStack{}, err
	}
	return demoStack{a: a, gw: gw}, nil
}

// stop stops the gateway, then the agent.
func (s demoStack) stop() {
	_ = s.gw.Stop(context.Background())
	_ = s.a.Stop(context.Background())
}

// canary returns the checkout route's canary weight as printed ("10%", or
// "-" without a canary) and its status.
func (s demoStack) canary() (string, gateway.CanaryStatus) {
	for _, c := range s.gw.Gateway().Canaries() {
		if c.Route == "checkout" {
			return fmt.Sprintf("%d%%", c.Weight), c
		}
	}
	return "-", gateway.CanaryStatus{}
}

// signal returns the named signal of the policy key as printed, "-" while
// it has no valid reading.
func (s demoStack) signal(key policies.Key, name string) string {
	readings, _ := s.a.Circuits().Signals(key)
	for _, r := range readings {
		if r.Name == name && r.Valid {
			return fmt.Sprintf("%.3g", r.Value)
		}
	}
	return "-"
}

// gauge returns the first series of the agent's gauge metric times scale
// as printed, "-" while there is none.
func (s demoStack) gauge(metric string, scale float64) string {
	mfs, _ := s.a.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() == metric && len(mf.GetMetric()) > 0 {
			return fmt.Sprintf("%.3g", scale*mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return "-"
}

// demoStats holds what the load generator's clients saw, by the second
// since start. It is safe for concurrent use.
type demoStats struct {
	start time.Time
	mu    sync.Mutex
	secs  map[int]*second // guarded by mu; one entry per second of the run
}

// record applies f to the current second.
func (s *demoStats) record(f func(*second)) {
	sec := int(time.Since(s.start) / time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.secs[sec]
	if c == nil {
		c = &second{}
		s.secs[sec] = c
	}
	f(c)
}

// at returns a copy of second sec, zero if nothing happened in it.
func (s *demoStats) at(sec int) second {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.secs[sec]
	if c == nil {
		return second{}
	}
	row := *c
	row.latencies = slices.Clone(c.latencies)
	return row
}

// add counts one response: served (and good when within demoGoodLatency),
// shed (429 or 503), or failed.
func (s *second) add(resp *http.Response, err error, lat time.Duration) {
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
}

// generateLoad offers rps GET requests a second to target, open loop,
// until ctx is done, and records in stats what each got. It returns once
// every request it sent has come back.
func generateLoad(ctx context.Context, target string, rps int, stats *demoStats) {
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stats.record(func(s *second) { s.offered++ })
		wg.Go(func() {
			t0 := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			resp, err := httpc.Do(req)
			lat := time.Since(t0)
			// Outcomes count in the second they arrive, as a client sees them.
			stats.record(func(s *second) { s.add(resp, err, lat) })
			if resp != nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
}

// watchDemo runs the schedule until d has passed since stats.start: the
// canary starts failing at phase/2, the upstream degrades at phase. Each
// second it prints the second before (what clients saw, the adaptive
// limiter, the canary's weight), and it returns those rows summed by phase.
func watchDemo(ctx context.Context, out io.Writer, d, phase time.Duration, up *upstream, canary *canaryUpstream, stats *demoStats, stack demoStack) demoTally {
	fmt.Fprintf(out, demoRowFormat, "t", "upstream", "offered", "served", "shed", "failed", "p95 ms", "limit", "in flight", "no-load ms", "canary")
	start := stats.start
	degraded := false
	var tally demoTally
	for sec := 1; time.Since(start) < d; sec++ {
		select {
		case <-ctx.Done(): // interrupted: runDemo reports it
			return tally
		case <-time.After(time.Until(start.Add(time.Duration(sec) * time.Second))):
		}
		if time.Since(start) >= phase/2 {
			canary.failing.Store(true)
		}
		if !degraded && time.Since(start) >= phase {
			up.degrade()
			degraded = true
		}
		row := stats.at(sec - 1)
		state := "200/s"
		if degraded {
			state = "50/s"
		}
		cw, _ := stack.canary()
		fmt.Fprintf(out, demoRowFormat, fmt.Sprintf("%ds", sec-1), state, fmt.Sprint(row.offered), fmt.Sprint(row.ok), fmt.Sprint(row.shed), fmt.Sprint(row.failed),
			p95(row.latencies), stack.gauge("fluxgate_adaptive_concurrency_limit", 1), stack.gauge("fluxgate_adaptive_concurrency_in_flight", 1),
			stack.gauge("fluxgate_adaptive_concurrency_no_load_latency_seconds", 1000), cw)
		tally.add(time.Duration(sec)*time.Second, d, phase, row)
	}
	return tally
}

// degrade takes three of the four workers away for good (their slots stay
// taken): 1 worker / 20 ms = 50 requests/s, latency unchanged when not
// queueing.
func (u *upstream) degrade() {
	go func() {
		for range 3 {
			u.workers <- struct{}{}
		}
	}()
}

// demoTally sums the printed seconds before the overload (early) and in
// its last third (late).
type demoTally struct {
	early, late           [2]int // admitted, offered
	lateSeconds, lateGood int
}

// add counts row, the second ending at end into a run of d whose overload
// starts at phase.
func (t *demoTally) add(end, d, phase time.Duration, row second) {
	switch {
	case end <= phase:
		t.early[0] += row.ok
		t.early[1] += row.offered
	case end > d-phase:
		t.late[0] += row.ok
		t.late[1] += row.offered
		t.lateSeconds++
		t.lateGood += row.good
	}
}

// result is what the tally shows: the shares admitted, the goodput in the
// last third, and whether admission dropped (by a fifth at least).
func (t demoTally) result() demoResult {
	res := demoResult{admittedEarly: share(t.early), lateAdm: share(t.late)}
	if t.lateSeconds > 0 {
		res.goodput = float64(t.lateGood) / float64(t.lateSeconds) / demoDegradedCapacity
	}
	res.shed = res.lateAdm < res.admittedEarly*0.8
	return res
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
