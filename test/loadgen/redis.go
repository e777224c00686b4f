package main

import (
	"bytes"
	"context"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

var profMode = flag.String("profile-mode", "exact, 10,000 keys", "with -redis -cpuprofile: the mode (as the report names it) whose first closed loop is profiled; all: every mode the agent (not a floor) serves, each to the -cpuprofile path with the mode's name before its extension")

var allocProf = flag.String("allocprofile", "", "with -redis: save the agent's allocs profile before and after the first closed loop of -profile-mode here, the one before with .before ahead of the extension (the agent must be built with -tags pprof); go tool pprof -sample_index=alloc_objects -base BEFORE AFTER shows what the loop allocated")

// profilePath is where a profile flag (-cpuprofile, -allocprofile) of
// value flagValue saves the profile of mode's first closed loop, or ""
// when that loop is not profiled; onAgent says that the agent under the
// flag serves the mode.
func profilePath(flagValue, mode string, onAgent bool) string {
	switch {
	case flagValue == "" || !onAgent:
		return ""
	case *profMode == "all":
		ext := filepath.Ext(flagValue)
		return strings.TrimSuffix(flagValue, ext) + "-" + slug(mode) + ext
	case mode == *profMode:
		return flagValue
	}
	return ""
}

// beforePath is the path of the allocs profile saved before the loop
// whose profile after it goes to path.
func beforePath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".before" + ext
}

// slug is name in lower-case letters, digits and dashes, for a file name.
func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else if r != ',' {
			dash = true
		}
	}
	return b.String()
}

var latOnly = flag.Bool("latency-only", false, "with -redis: only the paired open loop (floor, exact, gRPC floor)")

var redisMode = flag.Bool("redis", false, "measure Redis-backed limits instead: the agent's exact and lazy_sync modes over gRPC against a bare EVALSHA loop (the floor) on the same redis-server")

// redisPolicy holds one rate limiter per Redis mode, each at its own
// control point, keyed by the label user, limits far above the load.
const redisPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: redis-load}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: exact}]
            in_ports: {bucket_capacity: {constant_signal: {value: 1e12}}, fill_amount: {constant_signal: {value: 1e12}}}
            parameters: {limit_by_label_key: user, interval: 1s, backend: redis, failure_mode: fail_closed, redis_timeout: 1s}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: lazy}]
            in_ports: {bucket_capacity: {constant_signal: {value: 1e12}}, fill_amount: {constant_signal: {value: 1e12}}}
            parameters: {limit_by_label_key: user, interval: 1s, backend: redis, redis_timeout: 1s, lazy_sync: {enabled: true, num_sync: 4}}
`

// runRedis is -redis: it starts redis-server and the agent, and measures,
// interleaved -reps times: the floor (this process's EVALSHA loop of
// tokenbucket.lua with an exact decision's arguments, -callers
// goroutines, 64 keys), the gRPC floor (a grpc-go server making that one
// EVALSHA a Check, as envoy ratelimit does, driven as the agent is: the
// latency and CPU of one round trip a decision behind a gRPC hop), the
// agent's exact mode with 64 and 10,000 keys
// and lazy_sync with 10,000 keys (gRPC checks, -callers concurrent on one
// connection), the HTTP check driven by wrk at exact, lazy_sync and a
// local limiter (redishttp.go); then both floors and exact at -rate in
// a paired open loop (pairedOps: turns of -slice, -duration × -reps
// each).
//
// loadMode is one measured mode of -redis: what one call does, and the
// agent that decides (its CPU counts), or nil for the floor.
type loadMode struct {
	name  string
	op    func(context.Context, int, int) error
	agent *proc
	wrk   *wrkMode  // drive the HTTP check with wrk instead of op
	lean  *leanMode // drive the gRPC check with the lean client (lean.go) instead of op
}

func runRedis() error {
	dir, err := os.MkdirTemp("", "fluxgate-loadgen-redis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	redisAddr, rc, redisCPU, stopRedis, err := startRedisServer(dir)
	if err != nil {
		return err
	}
	defer stopRedis()
	defer rc.Close()

	pprofAddr := freeAddr()
	agent, err := startRedisAgent(dir, *agentBin, "redis.yaml", redisPolicy+localPolicyComponent, "FLUXGATE_REDIS_ADDRESS="+redisAddr, "FLUXGATE_PPROF_ADDR="+pprofAddr)
	if err != nil {
		return err
	}
	defer agent.stop()
	// -baseline-bin: a second build in the same rotation, on the same
	// Redis under its own policy name (its own Redis keys).
	var base *proc
	if *baseBin != "" {
		baseDir := filepath.Join(dir, "baseline")
		if base, err = startRedisAgent(baseDir, *baseBin, "redis.yaml", strings.Replace(redisPolicy+localPolicyComponent, "name: redis-load", "name: redis-load-baseline", 1), "FLUXGATE_REDIS_ADDRESS="+redisAddr); err != nil {
			return err
		}
		defer base.stop()
	}

	floor, err := floorOp(rc)
	if err != nil {
		return err
	}
	gfloor, err := startEvalshaServer(redisAddr)
	if err != nil {
		return err
	}
	defer gfloor.stop()
	gclient, gconn, err := dial(gfloor.grpcAddr)
	if err != nil {
		return err
	}
	defer gconn.Close()
	client, conn, err := dial(agent.grpcAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	checks := func(cp string, keys int) func(context.Context, int, int) error { return checksOn(client, cp, keys) }
	modes := []loadMode{
		{name: "floor (EVALSHA loop)", op: floor},
		{name: "exact, 64 keys", op: checks("exact", 64), agent: agent},
		{name: gFloorName, op: checksOn(gclient, "exact", 64), agent: gfloor},
		{name: "exact, 10,000 keys", op: checks("exact", 10_000), agent: agent},
		{name: "lazy_sync, 10,000 keys", op: checks("lazy", 10_000), agent: agent},
	}
	// The paired open loop's gRPC calls go by grpc-go (a user's client)
	// and by the lean client (lean.go), whose own latency is smaller.
	leanExact, err := newLeanClient(agent.grpcAddr, userRequests("exact", 64))
	if err != nil {
		return err
	}
	defer leanExact.close()
	leanFloor, err := newLeanClient(gfloor.grpcAddr, userRequests("exact", 64))
	if err != nil {
		return err
	}
	defer leanFloor.close()
	paced := append(modes[:3:3],
		loadMode{name: "exact, 64 keys (lean client)", op: leanExact.op, agent: agent},
		loadMode{name: "gRPC floor (lean client)", op: leanFloor.op, agent: gfloor})
	modes = append(modes, leanModes(agent, "")...)
	modes = append(modes, loadMode{name: leanFloorName, agent: gfloor, lean: &leanMode{"exact", 10_000}})
	modes = append(modes, httpModes(agent, "")...)
	if base != nil {
		bclient, bconn, err := dial(base.grpcAddr)
		if err != nil {
			return err
		}
		defer bconn.Close()
		modes = append(modes,
			loadMode{name: "baseline exact, 10,000 keys", op: checksOn(bclient, "exact", 10_000), agent: base},
			loadMode{name: "baseline lazy_sync, 10,000 keys", op: checksOn(bclient, "lazy", 10_000), agent: base})
		modes = append(modes, leanModes(base, "baseline ")...)
		modes = append(modes, httpModes(base, "baseline ")...)
	}
	pairs := pairedModes(paced)
	if *latOnly {
		writeRedisLatency(os.Stdout, paced, pairs)
		return nil
	}
	results, err := measureModes(modes, agent, rc, redisCPU, pprofAddr)
	if err != nil {
		return err
	}
	writeRedisReport(os.Stdout, modes, results, paced, pairs, agent, base)
	return nil
}

// startRedisServer starts redis-server on a free loopback port with its
// files in dir and waits until it answers.
func startRedisServer(dir string) (addr string, rc *goredis.Client, cpu func() float64, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, nil, nil, errors.New("redis-server is not installed (Debian package redis-server; `make deps` installs it)")
	}
	addr = freeAddr()
	rs := exec.Command(bin, "--port", port(addr), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := rs.Start(); err != nil {
		return "", nil, nil, nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop = func() { _ = rs.Process.Kill(); _, _ = rs.Process.Wait() }
	// The port first: go-redis logs every dial it fails.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			break
		}
		if time.Since(start) > 10*time.Second {
			stop()
			return "", nil, nil, nil, errors.New("redis-server does not listen")
		}
	}
	rc = goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	for start := time.Now(); rc.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			_ = rc.Close()
			stop()
			return "", nil, nil, nil, errors.New("redis-server does not answer")
		}
	}
	return addr, rc, func() float64 { return cpuSeconds(rs.Process.Pid) }, stop, nil
}

// floorOp is one round trip per decision: a bare EVALSHA of the token
// bucket script with an exact decision's arguments.
func floorOp(rc *goredis.Client) (func(context.Context, int, int) error, error) {
	src, err := os.ReadFile("controlpoint/ratelimit/tokenbucket.lua")
	if err != nil {
		return nil, fmt.Errorf("run from the repository root: %w", err)
	}
	script := goredis.NewScript(string(src))
	if err := script.Load(context.Background(), rc).Err(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, g, n int) error {
		key := "{fluxgate:loadgen/floor:0:" + strconv.Itoa((n*7+g)%64) + "}:tb"
		return script.EvalSha(ctx, rc, []string{key}, 1e12, 1e12, 1e6, "0", 1.0, "t", 7_200_000, "0").Err()
	}, nil
}

// checksOn checks at control point cp over keys distinct users; a
// rejection counts as a failure.
func checksOn(client pb.FlowControlServiceClient, cp string, keys int) func(context.Context, int, int) error {
	reqs := userRequests(cp, keys)
	return func(ctx context.Context, g, n int) error {
		resp, err := client.Check(ctx, reqs[(n*(*callers)+g)%keys])
		if err != nil {
			return err
		}
		if resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
			return fmt.Errorf("%s: rejected: %v", cp, resp.GetRejectReason())
		}
		return nil
	}
}

// agentMemStats reads the Go runtime's count of allocations and bytes
// allocated from an agent built with -tags pprof (MemStats at the end of
// /debug/pprof/allocs?debug=1); ok is false for any other build.
func agentMemStats(pprofAddr string) (mallocs, bytes float64, ok bool) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + pprofAddr + "/debug/pprof/allocs?debug=1")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, 0, false
	}
	seen := 0
	for line := range strings.Lines(string(body)) {
		name, v, found := strings.Cut(strings.TrimSpace(line), " = ")
		if !found {
			continue
		}
		switch name {
		case "# Mallocs":
			mallocs, err = strconv.ParseFloat(v, 64)
		case "# TotalAlloc":
			bytes, err = strconv.ParseFloat(v, 64)
		default:
			continue
		}
		if err != nil {
			return 0, 0, false
		}
		seen++
	}
	return mallocs, bytes, seen == 2
}

// runOrder is the order measureModes runs modes in: each baseline mode
// right after the mode it is the baseline's of, so that the two builds
// meet the machine in the same minute. Reversed every repetition, it
// leaves neither build always first: a run of one build as agent and
// baseline (2026-12-06) read the baseline's lean-client local checks
// 1.16–1.22× the agent's while the baseline's modes all ran at the end
// of each repetition, whichever build was which.
func runOrder(modes []loadMode) []loadMode {
	names := map[string]bool{}
	for _, m := range modes {
		names[m.name] = true
	}
	twinOf := func(m loadMode) (string, bool) { // the mode m is the baseline's of
		name, ok := strings.CutPrefix(m.name, "baseline ")
		return name, ok && names[name]
	}
	base := map[string]loadMode{}
	for _, m := range modes {
		if name, ok := twinOf(m); ok {
			base[name] = m
		}
	}
	order := make([]loadMode, 0, len(modes))
	for _, m := range modes {
		if _, ok := twinOf(m); ok {
			continue // right after its twin
		}
		order = append(order, m)
		if b, ok := base[m.name]; ok {
			order = append(order, b)
		}
	}
	return order
}

// userRequests are checks at control point cp, one for each of keys
// distinct users (the label user).
func userRequests(cp string, keys int) []*pb.CheckRequest {
	reqs := make([]*pb.CheckRequest, keys)
	for i := range reqs {
		reqs[i] = &pb.CheckRequest{ControlPoint: cp, Labels: map[string]string{"user": "u" + strconv.Itoa(i)}}
	}
	return reqs
}

// measureModes runs every mode closed loop, -reps times interleaved, with
// the CPU of the deciding agent, Redis and this process per call. With
// -cpuprofile it saves a CPU profile of the agent (from pprofAddr)
// during the first closed loop of -profile-mode.
func measureModes(modes []loadMode, agent *proc, rc *goredis.Client, redisCPU func() float64, pprofAddr string) (map[string][]map[string]float64, error) {
	results := map[string][]map[string]float64{}
	order := runOrder(modes)
	for rep := range *reps {
		if rep > 0 {
			slices.Reverse(order)
		}
		for _, m := range order {
			p := m.agent
			if p == nil {
				p = agent
			}
			var prof chan error
			if path := profilePath(*cpuProf, m.name, m.agent == agent); path != "" && rep == 0 {
				prof = make(chan error, 1)
				go func() {
					prof <- fetch(pprofAddr, fmt.Sprintf("profile?seconds=%d", max(1, int(duration.Seconds())-1)), path)
				}()
			}
			allocPath := ""
			if rep == 0 {
				allocPath = profilePath(*allocProf, m.name, m.agent == agent)
			}
			if allocPath != "" {
				if err := fetch(pprofAddr, "allocs", beforePath(allocPath)); err != nil {
					return nil, fmt.Errorf("allocs profile: %w", err)
				}
			}
			// The agent's allocation counters are read outside the
			// window of its CPU (the dump costs some).
			mallocs0, bytes0, haveMem := agentMemStats(pprofAddr)
			cpu0, rcpu0, lcpu0, calls0 := p.cpuSeconds(), redisCPU(), selfCPU(), scriptCalls(rc)
			var r map[string]float64
			if m.wrk != nil || m.lean != nil {
				var err error
				if m.wrk != nil {
					r, err = wrkChecks(p, m.wrk)
				} else {
					r, err = leanChecks(p, userRequests(m.lean.cp, m.lean.keys))
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", m.name, err)
					continue
				}
			} else {
				r = closedLoopOp(m.name, m.op)
				r["loadgen µs CPU/call"] = (selfCPU() - lcpu0) / r["calls"] * 1e6
			}
			if prof != nil {
				if err := <-prof; err != nil {
					return nil, fmt.Errorf("cpu profile: %w", err)
				}
			}
			r["scripts/call"] = float64(scriptCalls(rc)-calls0) / r["calls"]
			r["agent µs CPU/call"] = (p.cpuSeconds() - cpu0) / r["calls"] * 1e6
			r["redis µs CPU/call"] = (redisCPU() - rcpu0) / r["calls"] * 1e6
			if mallocs1, bytes1, ok := agentMemStats(pprofAddr); haveMem && ok && m.agent == agent {
				r["agent allocs/call"] = (mallocs1 - mallocs0) / r["calls"]
				r["agent bytes/call"] = (bytes1 - bytes0) / r["calls"]
			}
			if allocPath != "" {
				if err := fetch(pprofAddr, "allocs", allocPath); err != nil {
					return nil, fmt.Errorf("allocs profile: %w", err)
				}
			}
			results[m.name] = append(results[m.name], r)
		}
		fmt.Fprintf(os.Stderr, "repetition %d/%d done\n", rep+1, *reps)
	}
	return results, nil
}

// pairedModes offers the paced modes -rate calls a second in turns of
// -slice, -duration × -reps each.
func pairedModes(paced []loadMode) []pairedResult {
	ops := make([]op, len(paced))
	for i, m := range paced {
		ops[i] = m.op
	}
	return pairedOps(ops, *duration*time.Duration(*reps), *slice)
}

// writeRedisReport prints the medians of results as Markdown tables.
func writeRedisReport(w io.Writer, modes []loadMode, results map[string][]map[string]float64, paced []loadMode, pairs []pairedResult, agent, base *proc) {
	med := func(key, metric string) float64 {
		var xs []float64
		for _, m := range results[key] {
			xs = append(xs, m[metric])
		}
		return median(xs)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d interleaved repetitions of %v each; medians. %d callers closed loop (the agent's over one gRPC connection), %d/s open loop.\n\n", *reps, *duration, *callers, *rate)
	fmt.Fprintln(&b, "| mode | calls/s | × floor | agent µs CPU/call | redis µs CPU/call | loadgen µs CPU/call | scripts/call | failures |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|")
	for _, m := range modes {
		agentCPU := "–"
		if m.agent != nil {
			agentCPU = fmt.Sprintf("%.1f", med(m.name, "agent µs CPU/call"))
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %s | %.1f | %.1f | %.2f | %.0f |\n", m.name, med(m.name, "calls/s"), med(m.name, "calls/s")/med(modes[0].name, "calls/s"),
			agentCPU, med(m.name, "redis µs CPU/call"), med(m.name, "loadgen µs CPU/call"), med(m.name, "scripts/call"), med(m.name, "failures"))
	}
	ratio := func(label, lz, ex string) {
		if len(results[lz]) == 0 || len(results[ex]) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s: throughput %.2f×, agent CPU per call %.2f×\n", label,
			med(lz, "calls/s")/med(ex, "calls/s"), med(lz, "agent µs CPU/call")/med(ex, "agent µs CPU/call"))
	}
	fmt.Fprintln(&b)
	ratio("lazy_sync / exact with 10,000 keys", "lazy_sync, 10,000 keys", "exact, 10,000 keys")
	ratio("over gRPC (lean client): lazy_sync / exact with 10,000 keys", "gRPC (lean client) lazy_sync, 10,000 keys", "gRPC (lean client) exact, 10,000 keys")
	ratio("over gRPC (lean client): exact / the gRPC floor", "gRPC (lean client) exact, 10,000 keys", leanFloorName)
	ratio("over gRPC (lean client): lazy_sync / local limiter (no Redis)", "gRPC (lean client) lazy_sync, 10,000 keys", "gRPC (lean client) local limiter, 10,000 keys")
	ratio("over HTTP (wrk): lazy_sync / exact with 10,000 keys", "HTTP (wrk) lazy_sync, 10,000 keys", "HTTP (wrk) exact, 10,000 keys")
	ratio("over HTTP (wrk): lazy_sync / local limiter (no Redis)", "HTTP (wrk) lazy_sync, 10,000 keys", "HTTP (wrk) local limiter, 10,000 keys")
	if base != nil {
		ratio("baseline: lazy_sync / exact with 10,000 keys", "baseline lazy_sync, 10,000 keys", "baseline exact, 10,000 keys")
		ratio("baseline over gRPC (lean client): lazy_sync / exact with 10,000 keys", "baseline gRPC (lean client) lazy_sync, 10,000 keys", "baseline gRPC (lean client) exact, 10,000 keys")
		ratio("baseline over HTTP (wrk): lazy_sync / exact with 10,000 keys", "baseline HTTP (wrk) lazy_sync, 10,000 keys", "baseline HTTP (wrk) exact, 10,000 keys")
		ratio("over HTTP (wrk), lazy_sync: this build / baseline", "HTTP (wrk) lazy_sync, 10,000 keys", "baseline HTTP (wrk) lazy_sync, 10,000 keys")
	}
	head := "\nThe agent's allocations a call (its runtime's counters, from its pprof endpoint; with the agent's own work meanwhile):\n"
	for _, m := range modes {
		if len(results[m.name]) > 0 && results[m.name][0]["agent allocs/call"] > 0 {
			fmt.Fprintf(&b, "%s- %s: %.1f allocations, %.0f bytes\n", head, m.name, med(m.name, "agent allocs/call"), med(m.name, "agent bytes/call"))
			head = ""
		}
	}
	writeRedisLatency(&b, paced, pairs)
	fmt.Fprintf(&b, "agent peak RSS: %.1f MiB\n", agent.peakRSSMiB())
	if base != nil {
		fmt.Fprintf(&b, "baseline agent peak RSS: %.1f MiB\n", base.peakRSSMiB())
	}
	_, _ = io.Copy(w, &b)
}

// writeRedisLatency prints the paired open loop's figures, pairs[i]
// being paced[i]'s: the floor, then exact and the gRPC floor by grpc-go,
// then both by the lean client.
func writeRedisLatency(w io.Writer, paced []loadMode, pairs []pairedResult) {
	fmt.Fprintf(w, "\nPaired open loop at %d/s: turns of %v, %v each, the order alternating each round; p50 and p99 over all slices pooled\n\n",
		*rate, *slice, *duration*time.Duration(*reps))
	fmt.Fprintf(w, "| mode | p50 ms | p99 ms | rounds its slice p99 > the floor's | rounds > the gRPC floor's (same client) | failures |\n|---|---|---|---|---|---|\n")
	gFloor := map[int]int{1: 2, 3: 4} // exact's gRPC floor, by client
	for i, m := range paced {
		x := pairs[i]
		vs := "–"
		if j, ok := gFloor[i]; ok {
			vs = fmt.Sprintf("%d/%d", x.roundsAbove(pairs[j]), len(x.sliceP99))
		}
		fmt.Fprintf(w, "| %s | %.3f | %.3f | %d/%d | %s | %d |\n", m.name, x.p50, x.p99,
			x.roundsAbove(pairs[0]), len(x.sliceP99), vs, x.failures)
	}
	fmt.Fprintf(w, "\nexact p99 / floor p99: %.2f by grpc-go, %.2f by the lean client\n", pairs[1].p99/pairs[0].p99, pairs[3].p99/pairs[0].p99)
	fmt.Fprintf(w, "exact p99 / gRPC floor p99 (same client): %.2f by grpc-go, %.2f by the lean client\n", pairs[1].p99/pairs[2].p99, pairs[3].p99/pairs[4].p99)
}

// startRedisAgent builds (unless bin is set) and starts the agent in dir with
// one policy file and extra environment, and waits until it is ready.
func startRedisAgent(dir, bin, name, policyText string, env ...string) (*proc, error) {
	if bin == "" {
		bin = filepath.Join(dir, "fluxgate")
		build := exec.Command("go", "build", "-o", bin, "./cmd/fluxgate")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build agent: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", name), []byte(policyText), 0o644); err != nil {
		return nil, err
	}
	p := &proc{name: "agent", grpcAddr: freeAddr(), httpAddr: freeAddr()}
	p.cmd = exec.Command(bin, "agent")
	p.cmd.Dir = dir
	p.cmd.Env = append(append(os.Environ(),
		"FLUXGATE_SERVER_HOST=127.0.0.1",
		"FLUXGATE_SERVER_HTTP_PORT="+port(p.httpAddr),
		"FLUXGATE_SERVER_GRPC_PORT="+port(p.grpcAddr),
		"FLUXGATE_METRICS_PORT=0",
		"FLUXGATE_OTLP_GRPC_PORT=0",
		"FLUXGATE_OTLP_HTTP_PORT=0",
		"FLUXGATE_LOG_LEVEL=warn",
	), env...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	if err := waitHTTP("http://"+p.httpAddr+"/readyz", 20*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
		return nil, fmt.Errorf("agent: %w", err)
	}
	return p, nil
}

// scriptCalls is how many scripts (EVALSHA, EVAL) Redis has run, from
// INFO commandstats; 0 when it cannot be read.
func scriptCalls(rc *goredis.Client) int {
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if ok && (name == "cmdstat_evalsha" || name == "cmdstat_eval") {
			calls, _, _ := strings.Cut(rest, ",")
			v, _ := strconv.Atoi(calls)
			n += v
		}
	}
	return n
}

// selfCPU is this process's CPU time (the client side of every mode,
// and the floor's EVALSHA loop), from /proc.
func selfCPU() float64 { return cpuSeconds(os.Getpid()) }

// cpuSeconds is the CPU time of pid, from /proc.
func cpuSeconds(pid int) float64 {
	return (&proc{cmd: &exec.Cmd{Process: &os.Process{Pid: pid}}}).cpuSeconds()
}

// closedLoopOp runs op from -callers goroutines back to back for
// -duration.
func closedLoopOp(name string, op func(context.Context, int, int) error) map[string]float64 {
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var calls, failures atomic.Int64
	t0 := time.Now()
	var wg sync.WaitGroup
	for g := range *callers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				if err := op(ctx, g, n); err != nil {
					// The loop's own end (gRPC, and a socket deadline set
					// from it, may report it a little early).
					if d, _ := ctx.Deadline(); ctx.Err() != nil || endOfLoop(err) || time.Until(d) < 50*time.Millisecond {
						continue
					}
					if failures.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "%s: first failure: %v\n", name, err)
					}
					continue
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	n := float64(calls.Load())
	return map[string]float64{"calls": n, "calls/s": n / time.Since(t0).Seconds(), "failures": float64(failures.Load())}
}

// endOfLoop reports whether err is a deadline or cancellation: in the
// closed loop only its own end sets one.
func endOfLoop(err error) bool {
	if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.Canceled {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// gFloorName is the mode of the gRPC floor: envoy ratelimit's shape, a
// gRPC server that makes one EVALSHA round trip a call, measured as the
// agent is (the "agent" CPU column is its).
const gFloorName = "gRPC floor (a server making one EVALSHA a call)"

// leanFloorName is the gRPC floor driven by the lean client (lean.go).
const leanFloorName = "gRPC (lean client) gRPC floor"

// startEvalshaServer starts this program as the gRPC floor on Redis at
// redisAddr and waits until it answers.
func startEvalshaServer(redisAddr string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &proc{name: "gRPC floor", grpcAddr: freeAddr(), httpAddr: freeAddr()}
	p.cmd = exec.Command(self, "-serve-evalsha", p.grpcAddr+","+p.httpAddr+","+redisAddr)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the gRPC floor: %w", err)
	}
	if err := waitHTTP("http://"+p.httpAddr+"/readyz", 20*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("the gRPC floor: %w", err)
	}
	return p, nil
}

// evalsha is the gRPC floor's FlowControlService: every Check is one
// EVALSHA of the token bucket script (floorOp's), on a pool of as many
// connections as there are callers.
type evalsha struct {
	pb.UnimplementedFlowControlServiceServer
	op   func(context.Context, int, int) error
	resp *pb.CheckResponse
	n    atomic.Int64
}

func (e *evalsha) Check(ctx context.Context, _ *pb.CheckRequest) (*pb.CheckResponse, error) {
	if err := e.op(ctx, 0, int(e.n.Add(1))); err != nil {
		return nil, err
	}
	return e.resp, nil
}

// runEvalshaServer is -serve-evalsha: the gRPC floor, and /readyz over
// HTTP once its script is loaded.
func runEvalshaServer(addrs string) {
	parts := strings.Split(addrs, ",")
	if len(parts) != 3 {
		log.Fatalf("-serve-evalsha wants grpc,http,redis addresses, got %q", addrs)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: parts[2], PoolSize: *callers, ContextTimeoutEnabled: true, MaxRetries: -1})
	op, err := floorOp(rc)
	if err != nil {
		log.Fatal(err)
	}
	lg, err := net.Listen("tcp", parts[0])
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterFlowControlServiceServer(srv, &evalsha{op: op, resp: &pb.CheckResponse{DecisionType: pb.DecisionType_DECISION_TYPE_ACCEPTED, ControlPoint: "exact"}})
	go func() { _ = srv.Serve(lg) }()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	log.Fatal((&http.Server{Addr: parts[1], Handler: mux, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe())
}
