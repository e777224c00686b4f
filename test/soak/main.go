// Command soak floods a real agent with rate-limit checks under keys it
// has never seen (issue 14: 4.2 M new keys in 10 minutes took RSS from 52
// to 767 MB) and reports whether it stays within its memory budget and
// keeps answering.
//
// It builds ./cmd/fluxgate (or runs -fluxgate PATH), starts `fluxgate
// agent` on free loopback ports with a per-user rate limiter, and then:
//
//  1. measures unloaded check latency: one probe client, one check every
//     -probe-every under a fixed key, for -baseline;
//  2. sends -keys checks, each under a new key of -keylen bytes, over
//     gRPC from -workers clients, paced evenly over -duration, while the
//     probe keeps measuring;
//  3. waits -settle with no load.
//
// It samples the agent's RSS (/proc/PID/status VmRSS) every second and
// prints keys sent, RSS before, peak (VmHWM) and after, p99 of the probe
// unloaded and under load, and the agent's bucket and eviction counts. It
// exits 1 when the peak RSS is over -max-rss-mib or the loaded p99 over
// -p99-factor times the unloaded one.
//
//	go run ./test/soak                                  # 200,000 keys in 1 minute
//	go run ./test/soak -keys 4000000 -duration 10m      # issue 14's soak
//
// With -idle it runs issue 20's load-and-idle scenario instead (idle.go):
// `fluxgate gateway` serves gRPC and HTTP checks, Redis-backed rate limits
// in exact and lazy_sync mode (gRPC checks against a redis-server this
// program starts on a free loopback port), OTLP exports and gateway
// requests for -duration with -workers clients on each path (OTLP: at most
// fluxmeter.MaxGRPCExportsInFlight, the exports the agent holds at once
// before it sheds them), then idles; it prints RSS and the Go runtime's
// heap figures before, at the end of the load and 10 s, 30 s and 60 s
// after, and the peak (VmHWM) during the load and over the whole run, and
// fails when RSS a minute after is over -idle-rss-mib, the whole run's
// peak over limits.memory_mib, a call fails or Redis ran no script. -idle-redis=false leaves Redis out;
// without redis-server the Redis paths are left out with a message, or
// the run fails under CI=true.
//
//	go run ./test/soak -idle -duration 45s -workers 4
//	go run ./test/soak -idle -idle-redis=false          # every path but Redis
//
// With -conns N it runs the idle-connections scenario instead (conns.go):
// the gateway's memory a kept-alive idle client connection, on each of
// -conns-engines.
//
//	go run ./test/soak -conns 5000
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fluxgate/fluxgate/internal/freeport"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

const policy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-user, namespace: soak}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 10}}
              fill_amount: {constant_signal: {value: 10}}
            parameters: {limit_by_label_key: user, interval: 60s}
`

const config = `# written by test/soak
server: {host: 127.0.0.1, http_port: %d, grpc_port: %d}
metrics: {port: %d}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %q}
log: {level: warn}
%s`

func main() {
	keys := flag.Int("keys", 200_000, "new keys to send")
	duration := flag.Duration("duration", time.Minute, "time to send them in")
	keyLen := flag.Int("keylen", 32, "bytes per key")
	keyspace := flag.Int("keyspace", 0, "send keys from this many distinct ones in turn (a control run without new keys); 0: every key new")
	workers := flag.Int("workers", 8, "concurrent gRPC clients of the flood")
	baseline := flag.Duration("baseline", 15*time.Second, "unloaded latency measurement")
	probeEvery := flag.Duration("probe-every", 5*time.Millisecond, "interval of the probe's checks")
	settle := flag.Duration("settle", 30*time.Second, "time without load before the last RSS sample")
	memMiB := flag.Int("memory-mib", 0, "limits.rate_limiter_memory_mib of the agent; 0 keeps its default")
	maxRSS := flag.Int("max-rss-mib", 256, "fail when the agent's peak RSS is over this")
	factor := flag.Float64("p99-factor", 2, "fail when the loaded p99 is over this times the unloaded p99")
	bin := flag.String("fluxgate", "", "fluxgate binary; empty builds ./cmd/fluxgate")
	flag.Parse()
	log.SetFlags(log.Ltime)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "fluxgate-soak-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "fluxgate")
		log.Printf("building ./cmd/fluxgate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/fluxgate")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			log.Fatalf("build fluxgate (run from the repository root, or pass -fluxgate): %v", err)
		}
	}
	if *connsN > 0 {
		if code := runConns(ctx, *bin, dir, *connsN); code != 0 {
			cancel()
			_ = os.RemoveAll(dir)
			os.Exit(code)
		}
		return
	}
	if *idle {
		if code := runIdle(ctx, *bin, dir, *duration, *workers); code != 0 {
			cancel()
			_ = os.RemoveAll(dir)
			os.Exit(code)
		}
		return
	}
	ag, err := startAgent(ctx, *bin, dir, *memMiB)
	if err != nil {
		log.Fatal(err)
	}
	defer ag.stop()

	conn, err := grpc.NewClient(ag.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewFlowControlServiceClient(conn)

	rss := &rssSampler{pid: ag.cmd.Process.Pid}
	go rss.run(ctx)
	time.Sleep(2 * time.Second)
	before := rss.now()

	log.Printf("baseline: one check every %v for %v", *probeEvery, *baseline)
	unloaded := probe(ctx, client, *probeEvery, *baseline, nil)

	log.Printf("flood: %d new keys of %d bytes in %v from %d clients", *keys, *keyLen, *duration, *workers)
	var sent, failed atomic.Int64
	done := make(chan struct{})
	var loaded []time.Duration
	go func() { loaded = probe(ctx, client, *probeEvery, 0, done); close(done) }()
	floodLat := flood(ctx, conns(ag.grpc, *workers), *keys, *keyLen, *keyspace, *duration, &sent, &failed)
	done <- struct{}{}
	<-done
	peakDuring := rss.peak()
	buckets, evictions := ag.bucketMetrics()
	log.Printf("settle: %v without load", *settle)
	time.Sleep(*settle)
	after := rss.now()
	hwm := rss.hwm()

	p99u, p99l, p99f := pct(unloaded, 99), pct(loaded, 99), pct(floodLat, 99)
	what := "new keys"
	if *keyspace > 0 {
		what = fmt.Sprintf("checks under %d keys in turn", *keyspace)
	}
	fmt.Printf("\nsoak of %s: %d %s (%d-byte) in %v over gRPC, %d failed; limits.rate_limiter_memory_mib %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), sent.Load(), what, *keyLen, *duration, failed.Load(), orDefault(*memMiB))
	fmt.Printf("| | value |\n|---|---|\n")
	fmt.Printf("| RSS before | %d MiB |\n| RSS peak (VmHWM) | %d MiB (sampled peak during the flood %d MiB) |\n| RSS %v after | %d MiB |\n",
		before>>10, hwm>>10, peakDuring>>10, *settle, after>>10)
	fmt.Printf("| buckets at the end of the flood | %.0f |\n| evictions | %.0f |\n", buckets, evictions)
	fmt.Printf("| probe p50 / p99 unloaded (%d checks) | %v / %v |\n", len(unloaded), pct(unloaded, 50), p99u)
	fmt.Printf("| probe p50 / p99 under the flood (%d checks) | %v / %v |\n", len(loaded), pct(loaded, 50), p99l)
	fmt.Printf("| flood checks p50 / p99 | %v / %v |\n", pct(floodLat, 50), p99f)
	ok := true
	if hwm>>10 > int64(*maxRSS) {
		fmt.Printf("FAIL: peak RSS %d MiB over %d MiB\n", hwm>>10, *maxRSS)
		ok = false
	}
	if float64(p99l) > *factor*float64(p99u) {
		fmt.Printf("FAIL: p99 under the flood %v over %.1f × unloaded %v\n", p99l, *factor, p99u)
		ok = false
	}
	if failed.Load() > 0 {
		fmt.Printf("FAIL: %d checks failed\n", failed.Load())
		ok = false
	}
	if !ok {
		ag.stop()
		os.Exit(1)
	}
	fmt.Println("PASS")
}

func orDefault(mib int) string {
	if mib == 0 {
		return "default"
	}
	return strconv.Itoa(mib)
}

type agent struct {
	cmd           *exec.Cmd
	api, grpc, mx string
}

func freePort() int {
	p, err := freeport.Pick()
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func startAgent(ctx context.Context, bin, dir string, memMiB int) (*agent, error) {
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pol, "per-user.yaml"), []byte(policy), 0o644); err != nil {
		return nil, err
	}
	hp, gp, mp := freePort(), freePort(), freePort()
	limits := ""
	if memMiB > 0 {
		limits = fmt.Sprintf("limits: {rate_limiter_memory_mib: %d}\n", memMiB)
	}
	conf := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, config, hp, gp, mp, pol, limits), 0o600); err != nil {
		return nil, err
	}
	a := &agent{api: fmt.Sprintf("127.0.0.1:%d", hp), grpc: fmt.Sprintf("127.0.0.1:%d", gp), mx: fmt.Sprintf("127.0.0.1:%d", mp)}
	cmd, err := startReady(ctx, a.api, bin, "agent", "--config", conf)
	if err != nil {
		return nil, err
	}
	a.cmd = cmd
	return a, nil
}

// startReady starts bin with args, dying with this process, and waits
// up to 30 s until the agent's /readyz at api answers 200; it kills the
// process when that does not happen.
func startReady(ctx context.Context, api, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	client, scheme := agentHTTP(1)
	defer client.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r, err := client.Get(scheme + api + "/readyz"); err == nil {
			_ = r.Body.Close() // only the status matters
			if r.StatusCode == 200 {
				return cmd, nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
			return nil, fmt.Errorf("agent not ready in 30s")
		}
	}
}

func (a *agent) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	_, _ = a.cmd.Process.Wait()
}

// bucketMetrics reads fluxgate_ratelimiter_buckets and _evictions_total.
func (a *agent) bucketMetrics() (buckets, evictions float64) {
	r, err := http.Get("http://" + a.mx + "/metrics")
	if err != nil {
		log.Printf("metrics: %v", err)
		return -1, -1
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, "{")
		_, val, _ := strings.Cut(rest, "} ")
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "fluxgate_ratelimiter_buckets":
			buckets += v
		case "fluxgate_ratelimiter_evictions_total":
			evictions += v
		}
	}
	return buckets, evictions
}

func conns(addr string, n int) []pb.FlowControlServiceClient {
	out := make([]pb.FlowControlServiceClient, n)
	for i := range out {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		out[i] = pb.NewFlowControlServiceClient(c)
	}
	return out
}

// probe sends one check every `every` under a fixed key until d has
// passed (d > 0) or stop receives, and returns the latencies.
func probe(ctx context.Context, c pb.FlowControlServiceClient, every, d time.Duration, stop chan struct{}) []time.Duration {
	var lat []time.Duration
	t := time.NewTicker(every)
	defer t.Stop()
	end := time.After(d)
	if d <= 0 {
		end = nil
	}
	req := &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "probe"}, Tokens: 1e-9}
	for {
		select {
		case <-stop:
			return lat
		case <-end:
			return lat
		case <-t.C:
			start := time.Now()
			if _, err := c.Check(ctx, req); err != nil {
				log.Printf("probe: %v", err)
				continue
			}
			lat = append(lat, time.Since(start))
		}
	}
}

// flood sends n checks under new keys (or keys from keyspace in turn),
// paced evenly over d, and returns a sample of their latencies (one in
// 16).
func flood(ctx context.Context, clients []pb.FlowControlServiceClient, n, keyLen, keyspace int, d time.Duration, sent, failed *atomic.Int64) []time.Duration {
	var next atomic.Int64
	start := time.Now()
	interval := d / time.Duration(max(n, 1))
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	pad := strings.Repeat("k", max(keyLen-20, 0))
	for w, c := range clients {
		wg.Go(func() {
			var mine []time.Duration
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					break
				}
				if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
					time.Sleep(wait)
				}
				k := i
				if keyspace > 0 {
					k %= int64(keyspace)
				}
				key := fmt.Sprintf("%s%020d", pad, k)
				t := time.Now()
				_, err := c.Check(ctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": key}})
				if err != nil {
					failed.Add(1)
					continue
				}
				sent.Add(1)
				if i%16 == int64(w%16) {
					mine = append(mine, time.Since(t))
				}
				if i%500_000 == 0 && i > 0 {
					log.Printf("flood: %d keys sent", i)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i].Round(time.Microsecond)
}

// rssSampler reads the agent's VmRSS every second; VmHWM is its peak.
type rssSampler struct {
	pid int
	mu  sync.Mutex
	max int64 // KiB
}

func (r *rssSampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v := r.now()
			r.mu.Lock()
			r.max = max(r.max, v)
			r.mu.Unlock()
		}
	}
}

func (r *rssSampler) field(name string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return -1
}

func (r *rssSampler) now() int64 { return r.field("VmRSS") }
func (r *rssSampler) hwm() int64 { return r.field("VmHWM") }

func (r *rssSampler) peak() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.max
}
