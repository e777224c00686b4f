// Command loadgen measures the agent's check API against a no-op server of
// the same message shapes, interleaved in one run, as issue 3 asks:
//
//   - gRPC closed loop: N concurrent callers on one connection, throughput
//     and server CPU per call;
//   - gRPC open loop: a fixed rate, latency measured from each call's
//     intended send time (so a stall is not hidden), server cores used;
//   - HTTP (POST /v1/check and GET /v1/check/http) with wrk, if installed;
//   - a paired open loop (paired.go): the servers take turns at -rate in
//     -slice turns for -duration each, so that the machine's own stalls
//     fall on all alike, and p99 is taken over each server's turns.
//
// Each gRPC loop is run twice: by grpc-go's client (what a Go user's
// client costs) and by a lean client (lean.go) that costs the driver a
// few µs a call, so that the server, not the driver, is what is
// measured.
//
// It builds and starts the real agent binary and a no-op server (this
// program in -serve-noop mode) as child processes on loopback ports, runs
// every measurement -reps times alternating agent and no-op, and prints
// medians as a Markdown table. Everything stops by itself.
//
//	go run ./test/loadgen -reps 5 -duration 5s
//
// With -redis it measures Redis-backed limits instead (redis.go): the
// agent's exact mode against a bare EVALSHA loop on the same redis-server
// (the one-round-trip-per-decision floor), and lazy_sync with 10,000 keys:
//
//	go run ./test/loadgen -redis -reps 3 -duration 3s [-baseline-bin /tmp/fluxgate-old]
//
// (with -baseline-bin, -redis adds the second build's exact and lazy_sync
// modes on 10,000 keys to the rotation, on the same redis-server). Its
// latency is a paired open loop of the floor, the agent's exact mode and
// the gRPC floor (a grpc-go server making one EVALSHA a call), -duration
// × -reps each.
//
// With -grpc-only it measures only the two gRPC loops and prints, from
// the same interleaved run, issue 20's targets for the check path: server
// CPU per check ≤ 0.9× the no-op floor's, and p99 at -rate ≤ the floor's
// (from the paired open loop).
// -baseline-bin adds a second agent build (say, the last release) to the
// rotation, so that a change is measured before and after in one run:
//
//	go run ./test/loadgen -grpc-only -reps 6 -duration 4s [-baseline-bin /tmp/fluxgate-old]
//
// -tls measures the same over TLS: the agents' ports and the no-op
// server's serve a self-signed ECDSA P-256 certificate
// (internal/benchcert), which both gRPC clients verify (wrk does not
// verify); TLS 1.3, one connection a gRPC client as always. An agent
// with the engines net beside it (a wrapper setting
// FLUXGATE_SERVER_GRPC_ENGINE=net and FLUXGATE_SERVER_HTTP_ENGINE=net,
// as -baseline-bin) shows what the loops save over grpc-go's and
// net/http's TLS:
//
//	go run ./test/loadgen -tls -reps 3 -duration 4s -agent-bin BIN -baseline-bin BIN-on-net
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/internal/benchcert"
)

var (
	reps      = flag.Int("reps", 5, "repetitions of every measurement (medians are reported)")
	duration  = flag.Duration("duration", 5*time.Second, "length of one measurement")
	callers   = flag.Int("callers", 50, "concurrent callers in the closed loop")
	rate      = flag.Int("rate", 5000, "checks per second in the open loop")
	wrkConns  = flag.Int("wrk-connections", 50, "keep-alive connections for wrk")
	agentBin  = flag.String("agent-bin", "", "fluxgate binary (default: go build ./cmd/fluxgate)")
	baseBin   = flag.String("baseline-bin", "", "a second fluxgate binary measured in the same rotation (column \"baseline\")")
	cpuProf   = flag.String("cpuprofile", "", "write a pprof CPU profile of the agent during its first closed loop here (-redis: the first of -profile-mode; the agent must be built with -tags pprof; the default build is)")
	heapProf  = flag.String("heapprofile", "", "write a pprof heap profile of the agent after the last measurement here (needs -tags pprof, as -cpuprofile)")
	grpcOnly  = flag.Bool("grpc-only", false, "measure the gRPC loops only and print issue 20's check-path targets")
	tlsOn     = flag.Bool("tls", false, "every server's ports over TLS (a self-signed certificate the gRPC clients verify)")
	noopTLS   = flag.String("serve-noop-tls", "", "internal: with -serve-noop, serve gRPC and HTTP over TLS with this certificate and key (cert,key)")
	slice     = flag.Duration("slice", 250*time.Millisecond, "the paired open loop's turn: every server is driven at -rate for this long in turn, -duration in all (-redis: -duration × -reps)")
	serveNoop = flag.String("serve-noop", "", "internal: serve the no-op gRPC and HTTP servers on these addresses (grpc,http)")
	serveEval = flag.String("serve-evalsha", "", "internal: serve -redis's gRPC floor on these addresses (grpc,http,redis)")
)

func main() {
	flag.Parse()
	if *serveNoop != "" {
		runNoop(*serveNoop, *noopTLS)
		return
	}
	if *serveEval != "" {
		runEvalshaServer(*serveEval)
		return
	}
	if *redisMode {
		if err := runRedis(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// checkRequest is the flow every measurement sends: 8 labels, one
// matching rate limiter on the agent.
func checkRequest() *pb.CheckRequest {
	return &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{
		"user": "alice", "tier": "free", "http.method": "GET", "http.target": "/api/items",
		"http.host": "example.com", "http.scheme": "https", "region": "eu", "app": "shop",
	}}
}

const policy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: load}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {tier: free}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 1e12}}
              fill_amount: {constant_signal: {value: 1e12}}
            parameters: {limit_by_label_key: user, interval: 1s}
`

// proc is a child process serving gRPC and HTTP.
type proc struct {
	name     string
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
}

// stop ends p as an operator would (SIGTERM: the agent shuts down and
// removes its embedded TSDB's directory), killing it after 10 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = p.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 Hz on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func (p *proc) peakRSSMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func run() error {
	dir, err := os.MkdirTemp("", "fluxgate-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := prepareTLS(dir); err != nil {
		return err
	}
	bin, err := prepare(dir)
	if err != nil {
		return err
	}

	agent := startAgent("agent", bin, dir)
	pprofAddr := freeAddr()
	agent.cmd.Env = append(agent.cmd.Env, "FLUXGATE_PPROF_ADDR="+pprofAddr)
	procs := []*proc{agent}
	if *baseBin != "" {
		procs = append(procs, startAgent("baseline", *baseBin, dir))
	}
	noop := &proc{name: "no-op", grpcAddr: freeAddr(), httpAddr: freeAddr()}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	noop.cmd = exec.Command(self, "-serve-noop", noop.grpcAddr+","+noop.httpAddr)
	if srvTLS != nil {
		noop.cmd.Args = append(noop.cmd.Args, "-serve-noop-tls", srvTLS.Cert+","+srvTLS.Key)
	}
	procs = append(procs, noop)
	for _, p := range procs {
		p.cmd.Stderr = os.Stderr
		if err := p.cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", p.name, err)
		}
		defer p.stop()
	}
	for _, p := range procs {
		if err := waitHTTP(httpScheme()+p.httpAddr+"/readyz", 20*time.Second); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}

	results := map[string][]map[string]float64{} // measurement → per rep → metric
	record := func(key string, m map[string]float64) { results[key] = append(results[key], m) }
	_, wrkErr := exec.LookPath("wrk")
	haveWrk := wrkErr == nil && !*grpcOnly
	for rep := 0; rep < *reps; rep++ {
		// Alternate the order too, so that neither server always runs
		// right after the other.
		order := slices.Clone(procs)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			profile := ""
			if p == agent && rep == 0 {
				profile = *cpuProf
			}
			if err := measure(p, dir, pprofAddr, profile, haveWrk, record); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "repetition %d/%d done\n", rep+1, *reps)
	}
	if *heapProf != "" {
		if err := fetch(pprofAddr, "heap", *heapProf); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
	}
	names := make([]string, 0, len(procs))
	for _, p := range procs[:len(procs)-1] {
		names = append(names, p.name)
	}
	paired, err := pairedOpenLoop(procs, *slice, false)
	if err != nil {
		return err
	}
	pairedLean, err := pairedOpenLoop(procs, *slice, true)
	if err != nil {
		return err
	}
	report(results, paired, pairedLean, names, agent.peakRSSMiB(), haveWrk)
	return nil
}

// prepareTLS writes the servers' certificate into dir under -tls
// (srvTLS).
func prepareTLS(dir string) error {
	if !*tlsOn {
		return nil
	}
	var err error
	if srvTLS, err = benchcert.Write(dir, "loadgen", time.Now()); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}

// prepare builds the agent (unless -agent names one) into dir and writes
// the load policy into dir/policies, and returns the agent binary.
func prepare(dir string) (string, error) {
	bin := *agentBin
	if bin == "" {
		bin = filepath.Join(dir, "fluxgate")
		build := exec.Command("go", "build", "-tags", "pprof", "-o", bin, "./cmd/fluxgate")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return "", fmt.Errorf("build agent: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "load.yaml"), []byte(policy), 0o644); err != nil {
		return "", err
	}
	return bin, nil
}

// measure runs one repetition's measurements of p: gRPC closed and open
// loop, and with wrk the HTTP check paths, recording each. With profile
// set, it saves a CPU profile of the closed loop from pprofAddr there.
func measure(p *proc, dir, pprofAddr, profile string, haveWrk bool, record func(string, map[string]float64)) error {
	var prof chan error
	if profile != "" {
		prof = make(chan error, 1)
		go func() {
			prof <- fetch(pprofAddr, fmt.Sprintf("profile?seconds=%d", max(1, int(duration.Seconds())-1)), profile)
		}()
	}
	m, err := closedLoop(p)
	if prof != nil {
		if err := <-prof; err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	if err != nil {
		return err
	}
	record("grpc closed "+p.name, m)
	if m, err = leanClosedLoop(p); err != nil {
		return err
	}
	record("grpc lean closed "+p.name, m)
	m, err = openLoop(p)
	if err != nil {
		return err
	}
	record("grpc open "+p.name, m)
	if haveWrk {
		for _, path := range []string{"/v1/check", "/v1/check/http"} {
			m, err := wrk(dir, p, path)
			if err != nil {
				return err
			}
			record("http "+path+" "+p.name, m)
		}
	}
	return nil
}

// startAgent prepares (does not start) `bin agent` in dir on free ports.
func startAgent(name, bin, dir string) *proc {
	p := &proc{name: name, grpcAddr: freeAddr(), httpAddr: freeAddr()}
	p.cmd = exec.Command(bin, "agent")
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(),
		"FLUXGATE_SERVER_HOST=127.0.0.1",
		"FLUXGATE_SERVER_HTTP_PORT="+port(p.httpAddr),
		"FLUXGATE_SERVER_GRPC_PORT="+port(p.grpcAddr),
		"FLUXGATE_SERVER_PROBE_PORT=0",
		"FLUXGATE_METRICS_PORT=0",
		"FLUXGATE_OTLP_GRPC_PORT=0",
		"FLUXGATE_OTLP_HTTP_PORT=0",
		"FLUXGATE_LOG_LEVEL=warn",
	)
	if srvTLS != nil {
		p.cmd.Env = append(p.cmd.Env, "FLUXGATE_TLS_CERT_FILE="+srvTLS.Cert, "FLUXGATE_TLS_KEY_FILE="+srvTLS.Key)
	}
	return p
}

// srvTLS is the certificate the servers serve under -tls; nil without.
var srvTLS *benchcert.Files

// httpScheme is the servers' HTTP scheme with its ://.
func httpScheme() string {
	if srvTLS != nil {
		return "https://"
	}
	return "http://"
}

// fetch saves the agent's /debug/pprof/what into file.
func fetch(addr, what, file string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + what)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s (is the agent built with -tags pprof?)", what, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func waitHTTP(url string, limit time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second}
	if srvTLS != nil {
		tr := &http.Transport{TLSClientConfig: srvTLS.ClientConfig()}
		defer tr.CloseIdleConnections()
		client.Transport = tr
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v", url, limit)
}

func dial(addr string) (pb.FlowControlServiceClient, *grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if srvTLS != nil {
		creds = credentials.NewTLS(srvTLS.ClientConfig())
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, err
	}
	return pb.NewFlowControlServiceClient(conn), conn, nil
}

// checkOp is one Check of the load driver's request on client.
func checkOp(client pb.FlowControlServiceClient) op {
	req := checkRequest()
	return func(ctx context.Context, _, _ int) error {
		_, err := client.Check(ctx, req)
		return err
	}
}

// closedLoop runs -callers goroutines calling Check back to back.
func closedLoop(p *proc) (map[string]float64, error) {
	client, conn, err := dial(p.grpcAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	req := checkRequest()
	if _, err := client.Check(context.Background(), req); err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var calls, failures atomic.Int64
	cpu0, t0 := p.cpuSeconds(), time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := client.Check(ctx, req); err != nil {
					// The loop sets no per-call deadline: DeadlineExceeded and
					// Canceled only come from the measurement's own end.
					if c := status.Code(err); ctx.Err() == nil && c != codes.DeadlineExceeded && c != codes.Canceled {
						if failures.Add(1) == 1 {
							log.Printf("%s closed loop: first failure: %v", p.name, err)
						}
					}
					continue
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	cpu := p.cpuSeconds() - cpu0
	n := float64(calls.Load())
	return map[string]float64{
		"calls/s":            n / elapsed,
		"server µs CPU/call": cpu / n * 1e6,
		"failures":           float64(failures.Load()),
	}, nil
}

// leanClosedLoop is closedLoop's measurement by the lean client (lean.go):
// -callers calls in flight on one connection, at a few µs of this
// process's CPU a call where grpc-go's client spends about 14.
func leanClosedLoop(p *proc) (map[string]float64, error) {
	cpu0 := p.cpuSeconds()
	r, err := leanChecks(p, []*pb.CheckRequest{checkRequest()})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	r["server µs CPU/call"] = (p.cpuSeconds() - cpu0) / r["calls"] * 1e6
	return r, nil
}

// openLoop sends -rate checks per second for -duration and measures each
// from its intended send time.
func openLoop(p *proc) (map[string]float64, error) {
	client, conn, err := dial(p.grpcAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cpu0, start := p.cpuSeconds(), time.Now()
	lat, failures := pacedSlice(checkOp(client), *duration, 0)
	elapsed := time.Since(start).Seconds()
	cpu := p.cpuSeconds() - cpu0
	slices.Sort(lat)
	return map[string]float64{
		"p50 ms":       quantileMs(lat, 0.50),
		"p99 ms":       quantileMs(lat, 0.99),
		"server cores": cpu / elapsed,
		"failures":     float64(failures),
	}, nil
}

// wrk drives path with -wrk-connections keep-alive connections.
func wrk(dir string, p *proc, path string) (map[string]float64, error) {
	var args []string
	if path == "/v1/check" {
		body, _ := json.Marshal(map[string]any{"control_point": "ingress", "labels": checkRequest().Labels})
		script := filepath.Join(dir, "post.lua")
		lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
		if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-s", script)
	} else {
		args = append(args, "-H", "X-Original-URI: /api/items", "-H", "X-Original-Method: GET",
			"-H", "X-User: alice", "-H", "X-Tier: free", "-H", "X-Region: eu")
	}
	threads := strconv.Itoa(max(1, runtime.NumCPU()/2))
	args = append(args, "-t", threads, "-c", strconv.Itoa(*wrkConns), "-d", strconv.Itoa(int(duration.Seconds()))+"s", httpScheme()+p.httpAddr+path)
	cpu0 := p.cpuSeconds()
	out, err := exec.Command("wrk", args...).CombinedOutput()
	cpu := p.cpuSeconds() - cpu0
	if err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out)
	}
	m := map[string]float64{"server cores": cpu / duration.Seconds()}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			m["req/s"], _ = strconv.ParseFloat(f[1], 64)
			m["server µs CPU/req"] = m["server cores"] / m["req/s"] * 1e6
		case len(f) >= 5 && f[0] == "Non-2xx":
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			m["non-2xx"] = n
		}
	}
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func report(results map[string][]map[string]float64, paired, pairedLean map[string]map[string]float64, agents []string, rssMiB float64, haveWrk bool) {
	med := func(key, metric string) float64 {
		var xs []float64
		for _, m := range results[key] {
			xs = append(xs, m[metric])
		}
		return median(xs)
	}
	var b bytes.Buffer
	over := ""
	if srvTLS != nil {
		over = " Over TLS 1.3 (ECDSA P-256): gRPC one connection a client, wrk's HTTP/1.1 one a wrk connection."
	}
	fmt.Fprintf(&b, "%d interleaved repetitions of %v each; medians. %d callers closed loop, %d/s open loop.%s\n\n", *reps, *duration, *callers, *rate, over)
	head, rule := "| measurement |", "|---|"
	for _, a := range agents {
		head += " " + a + " |"
		rule += "---|"
	}
	head += " no-op |"
	rule += "---|"
	for _, a := range agents {
		head += " " + a + "/no-op |"
		rule += "---|"
	}
	fmt.Fprintln(&b, head)
	fmt.Fprintln(&b, rule)
	row := func(label, key, metric string) {
		n := med(key+" no-op", metric)
		line := "| " + label + " |"
		for _, a := range agents {
			line += fmt.Sprintf(" %.3g |", med(key+" "+a, metric))
		}
		line += fmt.Sprintf(" %.3g |", n)
		for _, a := range agents {
			line += fmt.Sprintf(" %.2f |", med(key+" "+a, metric)/n)
		}
		fmt.Fprintln(&b, line)
	}
	row("gRPC closed loop, calls/s", "grpc closed", "calls/s")
	row("gRPC closed loop, server µs CPU per call", "grpc closed", "server µs CPU/call")
	row("gRPC closed loop by the lean client, calls/s", "grpc lean closed", "calls/s")
	row("gRPC closed loop by the lean client, server µs CPU per call", "grpc lean closed", "server µs CPU/call")
	row("gRPC open loop, p50 ms", "grpc open", "p50 ms")
	row("gRPC open loop, p99 ms", "grpc open", "p99 ms")
	row("gRPC open loop, server cores", "grpc open", "server cores")
	if haveWrk {
		row("HTTP POST /v1/check, req/s", "http /v1/check", "req/s")
		row("HTTP POST /v1/check, server µs CPU per request", "http /v1/check", "server µs CPU/req")
		row("HTTP GET /v1/check/http, req/s", "http /v1/check/http", "req/s")
		row("HTTP GET /v1/check/http, server µs CPU per request", "http /v1/check/http", "server µs CPU/req")
	}
	b.WriteString(writePaired(paired, agents, *slice, "grpc-go's client"))
	b.WriteString(writePaired(pairedLean, agents, *slice, "the lean client"))
	fmt.Fprintf(&b, "\nagent peak RSS: %.1f MiB\n", rssMiB)
	if *grpcOnly {
		// Issue 20, item 3: ratios of medians from this one run.
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		for _, c := range []struct {
			client, closed string
			paired         map[string]map[string]float64
		}{{"grpc-go's client", "grpc closed", paired}, {"the lean client", "grpc lean closed", pairedLean}} {
			cpu := med(c.closed+" agent", "server µs CPU/call") / med(c.closed+" no-op", "server µs CPU/call")
			p99 := c.paired["agent"]["p99 ms"] / c.paired["no-op"]["p99 ms"]
			fmt.Fprintf(&b, "by %s: target CPU per check ≤ 0.90× the no-op floor: %.2f× (%s)\n", c.client, cpu, verdict(cpu <= 0.9))
			fmt.Fprintf(&b, "by %s: target p99 at %d/s ≤ the no-op floor's (paired open loop): %.2f× (%s)\n", c.client, *rate, p99, verdict(p99 <= 1))
		}
	}
	keys := sortedKeys(results)
	for _, k := range keys {
		var fails float64
		for _, m := range results[k] {
			fails += m["failures"] + m["non-2xx"]
		}
		if fails > 0 {
			fmt.Fprintf(&b, "failed calls in %s: %.0f over %d repetitions\n", k, fails, len(results[k]))
		}
	}
	_, _ = io.Copy(os.Stdout, &b)
}

// noop answers every check with a fixed accepted decision of the agent's
// shape, over gRPC and HTTP, doing no flow-control work.
type noop struct {
	pb.UnimplementedFlowControlServiceServer
	resp *pb.CheckResponse
}

func (n *noop) Check(_ context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	if req.GetControlPoint() == "" {
		return nil, errors.New("control_point is required")
	}
	return n.resp, nil
}

func runNoop(addrs, tlsFiles string) {
	grpcAddr, httpAddr, _ := strings.Cut(addrs, ",")
	resp := &pb.CheckResponse{
		DecisionType: pb.DecisionType_DECISION_TYPE_ACCEPTED,
		ControlPoint: "ingress",
		LimiterDecisions: []*pb.LimiterDecision{{
			PolicyName: "load", PolicyNamespace: "default", ComponentId: "0", ComponentType: "rate_limiter",
			Remaining: 1e12, Limit: 1e12, LimitKey: "alice",
		}},
	}
	lg, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		log.Fatal(err)
	}
	var opts []grpc.ServerOption
	if cert, key, ok := strings.Cut(tlsFiles, ","); ok {
		creds, err := credentials.NewServerTLSFromFile(cert, key)
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterFlowControlServiceServer(srv, &noop{resp: resp})
	go func() { _ = srv.Serve(lg) }()

	body, _ := json.Marshal(map[string]any{"decision_type": "DECISION_TYPE_ACCEPTED", "control_point": "ingress",
		"limiter_decisions": []map[string]any{{"policy_name": "load", "component_id": "0", "remaining": 1e12}}})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /v1/check/http", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-FluxGate-Decision", "accepted")
		w.WriteHeader(200)
	})
	srvHTTP := &http.Server{Addr: httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if cert, key, ok := strings.Cut(tlsFiles, ","); ok {
		log.Fatal(srvHTTP.ListenAndServeTLS(cert, key))
	}
	log.Fatal(srvHTTP.ListenAndServe())
}
