package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// controlPoint is the route's control point, which the policy selects.
const controlPoint = "ingress"

// priorityHeader carries a request's priority; the gateway passes every
// request header to the control point as the flow label
// http.request.header.<name> (lower case, '-' → '_').
const (
	priorityHeader = "X-Priority"
	priorityLabel  = "http.request.header.x_priority"
)

// serviceProtectionValues are the only values this harness gives the
// blueprint: what it must be told (name, flux meter, selectors) and one
// workload per priority. Everything else stays at the blueprint's
// defaults: zero configuration is what is measured. Priorities 100 and 10
// are those of the blueprint's own values example (its workload and its
// default workload).
const serviceProtectionValues = `policy_name: service-protection
flux_meter_name: ingress-latency
selectors:
  - control_point: ` + controlPoint + `
workloads:
  - name: high
    label_matcher: {match_labels: {` + priorityLabel + `: high}}
    priority: 100
  - name: low
    label_matcher: {match_labels: {` + priorityLabel + `: low}}
    priority: 10
`

const agentConfig = `# written by test/protect
server: {host: 127.0.0.1, http_port: %d, grpc_port: 0}
metrics: {port: 0}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %q}
admin: {token: %q}
log: {level: warn}
`

const gatewayConfig = agentConfig + `gateway:
  listen: %s
  upstreams:
    - name: app
      targets: [{address: %q}]
  routes:
    - {id: app, match: {path_prefix: /}, upstream: app, control_point: ` + controlPoint + `}
`

// gateway is what the driver sends to: a running `fluxgate gateway`
// child, or nginx with the example's auth_request configuration in front
// of a `fluxgate agent` child.
type gateway struct {
	addr, api  string // host:port the driver sends to, and of the agent's HTTP API
	token      string // admin token, for the signals endpoint only
	policyDesc string
	policyKey  string // namespace/name of the policy whose signals are polled; empty: none
	cmd        *exec.Cmd
	exited     chan struct{}
	nginx      *nginxFront // nil: the built-in gateway
}

func buildFluxgate(ctx context.Context, bin string) error {
	log.Printf("building ./cmd/fluxgate (-fluxgate PATH skips this)")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fluxgate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build fluxgate (run from the repository root, or pass -fluxgate): %w", err)
	}
	return nil
}

// startGateway writes dir/fluxgate.yaml and dir/policies, starts
// `fluxgate gateway` (front "gateway") or `fluxgate agent` and nginx
// (front "nginx") and waits until it proxies to the upstream.
func startGateway(ctx context.Context, bin, dir, upstreamAddr, policy, front string) (*gateway, error) {
	polDir := filepath.Join(dir, "policies")
	if err := os.RemoveAll(polDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(polDir, 0o755); err != nil {
		return nil, err
	}
	g := &gateway{exited: make(chan struct{})}
	var err error
	if g.policyDesc, g.policyKey, err = preparePolicy(ctx, bin, dir, polDir, policy); err != nil {
		return nil, err
	}
	g.addr, g.api = freeAddr(), freeAddr()
	_, apiPort, _ := net.SplitHostPort(g.api)
	var port int
	fmt.Sscan(apiPort, &port)
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	g.token = hex.EncodeToString(b)
	conf := filepath.Join(dir, "fluxgate.yaml")
	yml, command := fmt.Appendf(nil, gatewayConfig, port, polDir, g.token, g.addr, upstreamAddr), "gateway"
	if front == "nginx" {
		yml, command = fmt.Appendf(nil, agentConfig, port, polDir, g.token), "agent"
	}
	if *tsdbScrape > 0 {
		yml = fmt.Appendf(yml, "tsdb: {scrape_interval: %s}\n", tsdbScrape.String())
	}
	if err := os.WriteFile(conf, yml, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	g.cmd = exec.Command(bin, command, "--config", conf)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	// The child dies with this process, however it ends.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	go func() { _ = g.cmd.Wait(); logf.Close(); close(g.exited) }()
	if front == "nginx" {
		if g.nginx, err = startNginx(filepath.Join(dir, "nginx"), g.addr, g.api, upstreamAddr); err != nil {
			g.stop()
			return nil, err
		}
	}
	if err := g.waitReady(ctx, 60*time.Second); err != nil {
		g.stop()
		return nil, fmt.Errorf("%w (see %s)", err, logf.Name())
	}
	return g, nil
}

// preparePolicy puts the policy into polDir and describes it.
func preparePolicy(ctx context.Context, bin, dir, polDir, policy string) (desc, key string, err error) {
	switch policy {
	case "none":
		return "none (plain proxy)", "", nil
	case "service-protection":
		values := filepath.Join(dir, "service-protection.values.yaml")
		if err := os.WriteFile(values, []byte(serviceProtectionValues), 0o644); err != nil {
			return "", "", err
		}
		key, err := generate(ctx, bin, dir, polDir, values)
		return "service-protection blueprint, defaults, workloads high/low", key, err
	}
	data, err := os.ReadFile(policy)
	if err != nil {
		return "", "", fmt.Errorf("-policy: %w", err)
	}
	var doc struct {
		APIVersion string `yaml:"apiVersion"`
		Metadata   struct{ Name, Namespace string }
		PolicyName string `yaml:"policy_name"`
		Namespace  string `yaml:"namespace"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", "", fmt.Errorf("-policy %s: %w", policy, err)
	}
	if doc.APIVersion != "" { // a policy: passed through as it is
		if err := os.WriteFile(filepath.Join(polDir, filepath.Base(policy)), data, 0o644); err != nil {
			return "", "", err
		}
		return "file " + policy, nsName(doc.Metadata.Namespace, doc.Metadata.Name), nil
	}
	key, err = generate(ctx, bin, dir, polDir, policy) // values of the service-protection blueprint
	return "service-protection blueprint, values " + policy, key, err
}

// generate runs the real CLI and keeps the policy file of its output (it
// also writes a dashboard, alert rules and graphs).
func generate(ctx context.Context, bin, dir, polDir, values string) (key string, err error) {
	gen := filepath.Join(dir, "generated")
	if err := os.RemoveAll(gen); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, "blueprints", "generate", "service-protection", "--values", values, "--output-dir", gen)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("blueprints generate: %w: %s", err, out)
	}
	data, err := os.ReadFile(values)
	if err != nil {
		return "", err
	}
	var v struct {
		PolicyName string `yaml:"policy_name"`
		Namespace  string `yaml:"namespace"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return "", err
	}
	pol, err := os.ReadFile(filepath.Join(gen, v.PolicyName+".yaml"))
	if err != nil {
		return "", fmt.Errorf("blueprints generate wrote no policy: %w", err)
	}
	if err := os.WriteFile(filepath.Join(polDir, v.PolicyName+".yaml"), pol, 0o644); err != nil {
		return "", err
	}
	return nsName(v.Namespace, v.PolicyName), nil
}

func nsName(ns, name string) string {
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + name
}

// waitReady waits until the agent is ready (policies loaded) and a
// request through the gateway reaches the upstream.
func (g *gateway) waitReady(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for _, u := range []string{"http://" + g.api + "/readyz", "http://" + g.addr + "/"} {
		for {
			resp, err := c.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && (strings.HasSuffix(u, "/readyz") || resp.Header.Get(upstreamHeader) != "") {
					break
				}
				err = fmt.Errorf("%s answered %d", u, resp.StatusCode)
			}
			last = err
			select {
			case <-g.exited:
				return fmt.Errorf("gateway exited while starting: %v", g.cmd.ProcessState)
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("gateway not ready after %s: %w", d, last)
			}
		}
	}
	return nil
}

// warmUp sends requests one at a time through the gateway for a second
// (at least 50): the gateway's first requests after start-up are slow,
// and they would count in the first base phase. It returns their
// latencies, sorted: the no-load latency through the gateway.
func (g *gateway) warmUp(ctx context.Context) ([]time.Duration, error) {
	get, closeIdle := getter(g.addr, 1)
	defer closeIdle()
	return sequential(ctx, get)
}

// stop ends the gateway (and nginx): SIGTERM, then SIGKILL after 5s.
func (g *gateway) stop() {
	if g.nginx != nil {
		g.nginx.stop()
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// signalNames are the circuit signals recorded each second, when the
// policy has them (the service-protection blueprint's do). LATENCY_RAW is
// the flux-meter loop's query result before max_extrapolation holds it:
// an empty cell is a tick whose query had no reading.
var signalNames = []string{"LATENCY", "SETPOINT", "MULTIPLIER", "LATENCY_RAW"}

// signalPoller reads the policy's signals from the agent once a second
// (GET /v1/signals, with the admin token the config sets). It is only a
// diagnostic: when the endpoint refuses, the columns stay empty.
type signalPoller struct {
	mu     sync.Mutex
	bySec  map[int]map[string]float64 // guarded by mu; valid readings only
	failed error                      // guarded by mu; the first refusal
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

func (g *gateway) pollSignals(ctx context.Context, start time.Time) *signalPoller {
	ctx, cancel := context.WithCancel(ctx)
	p := &signalPoller{bySec: map[int]map[string]float64{}, cancel: cancel, done: make(chan struct{}), start: start}
	if g.policyKey == "" {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		c := &http.Client{Timeout: time.Second}
		for sec := 0; ; sec++ { // read at the end of each second of the run
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(p.start.Add(time.Duration(sec+1) * time.Second))):
			}
			if err := p.poll(ctx, c, "http://"+g.api+"/v1/signals/"+g.policyKey, g.token, sec); err != nil {
				p.mu.Lock()
				if p.failed == nil {
					p.failed = err
					log.Printf("signals unavailable (the CSV's signal columns stay empty): %v", err)
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *signalPoller) poll(ctx context.Context, c *http.Client, url, token string, sec int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var body struct {
		Signals []struct {
			Name  string  `json:"name"`
			Value float64 `json:"value"`
			Valid bool    `json:"valid"`
		} `json:"signals"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	got := map[string]float64{}
	for _, s := range body.Signals {
		if s.Valid {
			got[s.Name] = s.Value
		}
	}
	p.mu.Lock()
	p.bySec[sec] = got
	p.mu.Unlock()
	return nil
}

func (p *signalPoller) stop() {
	p.cancel()
	<-p.done
}

// readings returns a copy of what was read, by second of the run.
func (p *signalPoller) readings() map[int]map[string]float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]map[string]float64, len(p.bySec))
	for k, v := range p.bySec {
		out[k] = v
	}
	return out
}

// line is the live view of second sec's signals.
func (p *signalPoller) line(sec int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.bySec[sec]
	if !ok {
		r, ok = p.bySec[sec-1] // this second's reading may not be in yet
	}
	if !ok {
		return ""
	}
	var b strings.Builder
	for _, n := range signalNames {
		if v, ok := r[n]; ok {
			fmt.Fprintf(&b, " %s %.3g", n, v)
		} else {
			fmt.Fprintf(&b, " %s -", n)
		}
	}
	return b.String()
}

// cpu is the CPU time (user + system) the gateway or agent child has used
// so far, from /proc/PID/stat; -1 when it cannot be read. Clock ticks are
// taken as 100 a second (USER_HZ on Linux).
func (g *gateway) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields after its ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return -1
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return -1
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
