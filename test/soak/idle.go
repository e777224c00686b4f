package main

// The load-and-idle scenario (issue 20, item 4): a long-running agent that
// has served every path (gRPC, HTTP, Redis exact and lazy_sync, OTLP,
// gateway) returns to a small RSS within a minute of the load stopping,
// and stays within its memory budget throughout. The Redis paths are in
// idleredis.go.

import (
	"bufio"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/internal/benchcert"
)

var (
	idle        = flag.Bool("idle", false, "run the load-and-idle scenario instead of the new-key flood: every path (Redis too unless -idle-redis=false) for -duration, then RSS 10 s, 30 s and 60 s after")
	idleUsers   = flag.Int("idle-users", 20_000, "-idle: distinct users the load's checks come from")
	idleBudget  = flag.Int("idle-memory-mib", 0, "-idle: limits.memory_mib of the agent; 0 keeps its default")
	idleHeap    = flag.String("idle-heapprofile", "", "-idle: save the agent's heap profile 60 s after the load here (fluxgate built with -tags pprof, FLUXGATE_PPROF_ADDR set in this program's environment)")
	idleRSSGoal = flag.Int("idle-rss-mib", 100, "-idle: fail when RSS 60 s after the load is over this")
	idleTLS     = flag.Bool("tls", false, "-idle: the agent's check, OTLP and API ports over TLS (a self-signed certificate the clients verify; metrics and the gateway's listener stay plain)")
)

// soakTLS is the agent's certificate under -tls; nil without.
var soakTLS *benchcert.Files

// agentHTTP is the client of the agent's HTTP API port, and its scheme
// with its ://: TLS under -tls.
func agentHTTP(maxIdle int) (*http.Client, string) {
	tr := &http.Transport{MaxIdleConnsPerHost: maxIdle}
	if soakTLS == nil {
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}, "http://"
	}
	tr.TLSClientConfig = soakTLS.ClientConfig()
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, "https://"
}

// agentCreds are the gRPC clients' credentials for the agent's ports.
func agentCreds() credentials.TransportCredentials {
	if soakTLS == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(soakTLS.ClientConfig())
}

const idlePolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: idle, namespace: soak}
spec:
  resources:
    flux_meters:
      latency:
        selectors: [{control_point: ingress}]
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1e9}}
              fill_amount: {constant_signal: {value: 1e9}}
            parameters: {limit_by_label_key: user, interval: 1s}
`

const idleConfig = `# written by test/soak -idle
server: {host: 127.0.0.1, http_port: %d, grpc_port: %d}
metrics: {port: %d, tls: false}
otlp: {grpc_port: %d, http_port: %d}
policies: {dir: %q}
log: {level: warn}
%s
%s
%s
gateway:
  listen: 127.0.0.1:%d
  upstreams:
    - name: app
      targets: [{address: %s}]
  routes:
    - {id: app, match: {path_prefix: /}, upstream: app, control_point: ingress}
`

// idleAgent is `fluxgate gateway` and its addresses.
type idleAgent struct {
	cmd                                   *exec.Cmd
	api, grpc, mx, otlpGRPC, otlpHTTP, gw string
}

// startIdleAgent starts the agent in front of upstream; with redisAddr
// set it also gets the Redis-backed policy and redis.address.
func startIdleAgent(ctx context.Context, bin, dir, upstream, redisAddr string, budget int) (*idleAgent, error) {
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(pol, "idle.yaml"), []byte(idlePolicy), 0o644); err != nil {
		return nil, err
	}
	redis := ""
	if redisAddr != "" {
		if err := os.WriteFile(filepath.Join(pol, "idle-redis.yaml"), []byte(idleRedisPolicy), 0o644); err != nil {
			return nil, err
		}
		redis = fmt.Sprintf("redis: {address: %q}", redisAddr)
	}
	hp, gp, mp, og, oh, gw := freePort(), freePort(), freePort(), freePort(), freePort(), freePort()
	limits := ""
	if budget > 0 {
		limits = fmt.Sprintf("limits: {memory_mib: %d}", budget)
	}
	tlsOn := ""
	if soakTLS != nil {
		tlsOn = fmt.Sprintf("tls: {cert_file: %q, key_file: %q}", soakTLS.Cert, soakTLS.Key)
	}
	conf := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, idleConfig, hp, gp, mp, og, oh, pol, limits, redis, tlsOn, gw, upstream), 0o600); err != nil {
		return nil, err
	}
	at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	a := &idleAgent{api: at(hp), grpc: at(gp), mx: at(mp), otlpGRPC: at(og), otlpHTTP: at(oh), gw: at(gw)}
	cmd, err := startReady(ctx, a.api, bin, "gateway", "--config", conf)
	if err != nil {
		return nil, err
	}
	a.cmd = cmd
	return a, nil
}

// goMem reads the Go runtime's view from the agent's /metrics: heap in
// use, heap held but free, heap returned to the OS, stacks, in MiB.
func (a *idleAgent) goMem() string {
	r, err := http.Get("http://" + a.mx + "/metrics")
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer r.Body.Close()
	body, _ := io.ReadAll(r.Body)
	v := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.HasPrefix(name, "go_memstats_") {
			v[name], _ = strconv.ParseFloat(val, 64)
		}
	}
	mib := func(k string) float64 { return v["go_memstats_"+k] / (1 << 20) }
	return fmt.Sprintf("heap in use %.0f, idle %.0f (released %.0f), stacks %.0f MiB",
		mib("heap_inuse_bytes"), mib("heap_idle_bytes"), mib("heap_released_bytes"), mib("stack_inuse_bytes"))
}

// runIdle runs the scenario and returns the exit code.
func runIdle(ctx context.Context, bin, dir string, d time.Duration, workers int) int {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Print(err)
		return 1
	}
	go func() { _ = up.Serve(ln) }()
	defer up.Close()
	if *idleTLS {
		if soakTLS, err = benchcert.Write(dir, "soak", time.Now()); err != nil {
			log.Print(err)
			return 1
		}
	}

	rs, err := idleRedisServer(dir)
	if err != nil {
		log.Print(err)
		return 1
	}
	defer rs.stop()
	ag, err := startIdleAgent(ctx, bin, dir, ln.Addr().String(), rs.address(), *idleBudget)
	if err != nil {
		log.Print(err)
		return 1
	}
	defer func() { _ = ag.cmd.Process.Signal(syscall.SIGTERM); _, _ = ag.cmd.Process.Wait() }()
	rss := &rssSampler{pid: ag.cmd.Process.Pid}
	go rss.run(ctx)
	time.Sleep(2 * time.Second)
	before, beforeAnon, beforeGo := rss.now(), rss.field("RssAnon"), ag.goMem()

	paths := "gRPC and HTTP checks, " + rs.paths() + "OTLP over gRPC and HTTP, gateway requests"
	if soakTLS != nil {
		paths += ", the agent's ports over TLS (the gateway's listener plain)"
	}
	log.Printf("load: %s, %d workers each, %d users, for %v", paths, workers, *idleUsers, d)
	lctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	var calls, failed atomic.Int64
	var wg sync.WaitGroup
	var user atomic.Int64
	nextUser := func() string { return "u" + strconv.FormatInt(user.Add(1)%int64(*idleUsers), 10) }
	count := func(err error) {
		// No call has a deadline of its own: DeadlineExceeded and Canceled
		// come from the end of the load (gRPC's timer may fire a moment
		// before the context's).
		end := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled
		if err != nil {
			if lctx.Err() == nil && !end && failed.Add(1) == 1 {
				log.Printf("first failure: %v", err)
			}
			return
		}
		calls.Add(1)
	}
	loopN := func(n int, f func() error) {
		for range n {
			wg.Go(func() {
				for lctx.Err() == nil {
					count(f())
				}
			})
		}
	}
	loop := func(f func() error) { loopN(workers, f) }
	conn, err := grpc.NewClient(ag.grpc, grpc.WithTransportCredentials(agentCreds()))
	if err != nil {
		log.Print(err)
		return 1
	}
	defer conn.Close()
	checks := pb.NewFlowControlServiceClient(conn)
	loop(func() error {
		_, err := checks.Check(lctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": nextUser(), "tier": "free"}})
		return err
	})
	var redisCalls atomic.Int64
	rs.load(loop, func(cp string) error { return redisCheck(lctx, checks, cp, nextUser()) }, &redisCalls)
	hc, api := agentHTTP(64)
	api += ag.api
	get := func(url string, h http.Header) error { return idleGet(lctx, hc, url, h) }
	post := func(url, ctype string, body []byte) error { return idlePost(lctx, hc, url, ctype, body) }
	loop(func() error {
		return post(api+"/v1/check", "application/json",
			fmt.Appendf(nil, `{"control_point":"ingress","labels":{"user":%q,"tier":"free"}}`, nextUser()))
	})
	loop(func() error {
		return get(api+"/v1/check/http", http.Header{"X-Original-Uri": {"/api/items"}, "X-User": {nextUser()}})
	})
	loop(func() error {
		return get("http://"+ag.gw+"/api/items?u="+nextUser(), http.Header{"X-User": {nextUser()}})
	})
	otlp := collectortrace.NewTraceServiceClient(conn)
	oconn, err := grpc.NewClient(ag.otlpGRPC, grpc.WithTransportCredentials(agentCreds()))
	if err != nil {
		log.Print(err)
		return 1
	}
	defer oconn.Close()
	otlpPort := collectortrace.NewTraceServiceClient(oconn)
	var batch atomic.Int64
	// The agent holds at most MaxGRPCExportsInFlight exports over both
	// ports and answers the next Unavailable: more exporters than that
	// would measure its shedding, not its memory.
	loopN(min(workers, fluxmeter.MaxGRPCExportsInFlight), func() error {
		c := otlp
		if batch.Add(1)%2 == 0 {
			c = otlpPort
		}
		_, err := c.Export(lctx, spans(64))
		return err
	})
	wg.Wait()
	res := idleResult{d: d, workers: workers, paths: paths, calls: calls.Load(), failed: failed.Load(), redis: rs != nil, redisCalls: redisCalls.Load(),
		before: idleSample{rss: before, anon: beforeAnon, goView: beforeGo}}
	res.load = idleSample{rss: rss.now(), anon: rss.field("RssAnon")}
	res.loadPeak = rss.hwm()
	res.load.goView = ag.goMem()
	res.redisScripts, res.redisKeys = rs.scripts()
	log.Printf("load done: %d calls (%d Redis-backed), %d failed; RSS %d MiB, peak %d MiB", res.calls, res.redisCalls, res.failed, res.load.rss>>10, res.loadPeak>>10)

	start := time.Now()
	for _, at := range []time.Duration{10 * time.Second, 30 * time.Second, 60 * time.Second} {
		time.Sleep(time.Until(start.Add(at)))
		res.after = append(res.after, idleSample{at, rss.now(), rss.field("RssAnon"), ag.goMem()})
		log.Printf("%v after: RSS %d MiB; %s", at, res.after[len(res.after)-1].rss>>10, res.after[len(res.after)-1].goView)
	}
	// RSS can rise after the load (goroutines and syncs winding down):
	// the peak that counts against the budget is the whole run's.
	res.peak = rss.hwm()
	if *idleHeap != "" {
		if err := saveHeap(*idleHeap); err != nil {
			log.Printf("heap profile: %v", err)
		}
	}
	return res.report()
}

// idleSample is the agent's memory at one moment: RSS and its anonymous
// part in KiB, and the Go runtime's view.
type idleSample struct {
	at        time.Duration // after the end of the load
	rss, anon int64
	goView    string
}

// idleResult is what runIdle measured.
type idleResult struct {
	d             time.Duration
	workers       int
	paths         string // what was loaded
	calls, failed int64
	before, load  idleSample
	loadPeak      int64 // VmHWM at the end of the load, KiB
	peak          int64 // VmHWM at the end of the run, KiB
	after         []idleSample

	redis                   bool  // the Redis paths were loaded
	redisCalls              int64 // accepted Redis-backed checks, exact and lazy_sync
	redisScripts, redisKeys int64 // scripts Redis ran, keys it held at the end of the load
}

// report prints the table and the verdict and returns the exit code.
func (r *idleResult) report() int {
	fmt.Printf("\nload and idle, %s: %v of %s; %d workers each, %d users; %d calls, %d failed; limits.memory_mib %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), r.d, r.paths, r.workers, *idleUsers, r.calls, r.failed, orDefault(*idleBudget))
	if r.redis {
		fmt.Printf("Redis: %d accepted Redis-backed checks, %d scripts run, %d keys held at the end of the load\n", r.redisCalls, r.redisScripts, r.redisKeys)
	} else {
		fmt.Println("Redis paths not exercised")
	}
	fmt.Printf("| when | RSS | of it anonymous | Go runtime |\n|---|---|---|---|\n")
	fmt.Printf("| before the load | %d MiB | %d MiB | %s |\n", r.before.rss>>10, r.before.anon>>10, r.before.goView)
	fmt.Printf("| peak (VmHWM) during the load / the whole run | %d / %d MiB | | |\n", r.loadPeak>>10, r.peak>>10)
	fmt.Printf("| end of the load | %d MiB | %d MiB | %s |\n", r.load.rss>>10, r.load.anon>>10, r.load.goView)
	for _, s := range r.after {
		fmt.Printf("| %v after | %d MiB | %d MiB | %s |\n", s.at, s.rss>>10, s.anon>>10, s.goView)
	}
	code := 0
	if last := r.after[len(r.after)-1].rss >> 10; last > int64(*idleRSSGoal) {
		fmt.Printf("FAIL: RSS %d MiB a minute after the load, over %d MiB\n", last, *idleRSSGoal)
		code = 1
	}
	if *idleBudget > 0 && r.peak>>10 > int64(*idleBudget) {
		fmt.Printf("FAIL: peak RSS %d MiB over limits.memory_mib %d\n", r.peak>>10, *idleBudget)
		code = 1
	}
	if r.redis && (r.redisCalls == 0 || r.redisScripts <= 0) {
		fmt.Printf("FAIL: the Redis paths were not exercised (%d checks, %d scripts)\n", r.redisCalls, r.redisScripts)
		code = 1
	}
	if r.failed > 0 {
		fmt.Printf("FAIL: %d calls failed\n", r.failed)
		code = 1
	}
	if code == 0 {
		fmt.Println("PASS")
	}
	return code
}

// idleGet is a GET of url with header h; a status of 300 or more is an
// error.
func idleGet(ctx context.Context, hc *http.Client, url string, h http.Header) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header = h
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// idlePost is a POST of body to url; a status of 300 or more is an error.
func idlePost(ctx context.Context, hc *http.Client, url, ctype string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// spans is an export of n finished flows at the ingress control point.
func spans(n int) *collectortrace.ExportTraceServiceRequest {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	now := uint64(time.Now().UnixNano())
	ss := &tracepb.ScopeSpans{}
	for i := range n {
		ss.Spans = append(ss.Spans, &tracepb.Span{
			TraceId: bytes.Repeat([]byte{byte(i + 1)}, 16), SpanId: bytes.Repeat([]byte{byte(i + 1)}, 8), Name: "flow",
			StartTimeUnixNano: now - uint64(i+1)*1e6, EndTimeUnixNano: now,
			Attributes: []*commonpb.KeyValue{
				str(flow.AttrControlPoint, "ingress"), str(flow.AttrDecisionType, "DECISION_TYPE_ACCEPTED"),
				{Key: flow.AttrHTTPStatus, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}},
				{Key: flow.AttrWorkloadMillis, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: float64(i % 50)}}},
			},
		})
	}
	return &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{ss}}}}
}

// saveHeap saves the heap profile of an agent that serves pprof on
// FLUXGATE_PPROF_ADDR (it inherits this program's environment).
func saveHeap(file string) error {
	addr := os.Getenv("FLUXGATE_PPROF_ADDR")
	if addr == "" {
		return fmt.Errorf("FLUXGATE_PPROF_ADDR is not set")
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s (is fluxgate built with -tags pprof?)", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}
