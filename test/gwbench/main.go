// Command gwbench measures the built-in gateway side by side with nginx,
// as issues 6 and 20 ask, in one bounded run on loopback:
//
//   - proxying throughput: wrk (keep-alive, -conns connections) against
//     the upstream directly, `fluxgate gateway` and nginx proxy_pass
//     (keep-alive upstream pool) to the same small-response upstream,
//     with each server's CPU time a request, user and system, from /proc
//     (nginx's with its workers);
//   - added latency: an open-loop Go driver (fasthttp client, -conns
//     keep-alive connections, paced by nanosleep) at half of the gateway's
//     median maximum throughput (or -lat-rate) against the same three,
//     latency measured from each request's intended send time; added
//     p99 = p99 through the proxy − p99 direct, per repetition;
//   - balancing: four targets, one slowed 10× (-fast-delay, 10×), at a
//     fixed open-loop rate through two gateways that differ only in
//     algorithm (adaptive, round-robin); p99 and the slow target's share.
//
// It builds cmd/fluxgate and starts the upstreams (this program in
// -serve-upstream mode), three `fluxgate gateway` processes and nginx
// (`daemon off`, temp config) as children, runs every measurement -reps
// times interleaving the contenders, and prints medians as Markdown.
// Children die with it (Pdeathsig). It needs nginx and wrk, and h2load
// (Debian package nghttp2-client) under -h2.
//
//	go run ./test/gwbench -reps 3 -duration 3s
//
// -evproxy adds test/gwbench/evproxy (a minimal proxy, a module of its
// own) as two contenders: on gnet event loops (evproxy) and on a
// goroutine a connection (evproxy-gr); -throughput-only skips the
// latency and balancing runs:
//
//	go run ./test/gwbench -reps 3 -duration 3s -evproxy -throughput-only
//
// -tls measures the same with TLS terminated by the gateways and nginx
// (a self-signed ECDSA P-256 certificate made in the temp dir; wrk and the
// latency driver speak https, the driver verifying the certificate); the
// upstream stays plain, and gateway-net (gateway.engine: net, the net/http
// engine) runs beside the gateway instead of gateway-fast and proxy-only:
//
//	go run ./test/gwbench -reps 3 -duration 3s -tls
//
// -h2 (implies -tls) measures the same for HTTP/2 clients: nginx listens
// with `ssl http2`, the gateways offer h2 by ALPN as they always do, and
// h2load replaces wrk (-conns connections of one stream each, then of
// ten), each run failing unless it negotiated h2 and every request
// succeeded; the latency driver speaks HTTP/2 on -conns connections of
// one stream each (net/http, an http.ClientConn a connection);
// the upstream also serves h2c, so that direct is measured the same way:
//
//	go run ./test/gwbench -reps 3 -duration 3s -h2
//
// -policy limit|full puts a policy at the gateways' control point
// (ingress), as a user runs the gateway: limit a rate limiter keyed by the
// X-User field (every driver sends X-User: alice to every contender) with
// a limit no run reaches, full that plus a flux meter and an adaptive
// concurrency limiter that never binds. The run fails unless each gateway
// answers with X-FluxGate-Decision: accepted and RateLimit-Limit, and,
// under full, unless the flux meter's count on the gateway's /metrics grew
// by every request answered. The default, none, leaves the policies dir
// empty: the control point then decides nothing.
//
//	go run ./test/gwbench -reps 3 -duration 3s -policy full -throughput-only
//
// -engine names the engine measured as the gateway; by default the one
// gateway.engine auto picks here: loop on Linux, with the lean engine
// beside it as gateway-lean; -engine lean measures lean with the fast
// engine beside it as gateway-fast:
//
//	go run ./test/gwbench -reps 3 -duration 3s -throughput-only -engine lean
//
// -baseline BIN runs a second build beside the gateway as contender
// baseline (same engine and configuration), so that a change is measured
// against the build before it in one interleaved run, and prints the
// gateway's ratios to it:
//
//	go run ./test/gwbench -reps 3 -duration 4s -paired 100ms -fluxgate NEW -baseline OLD
//
// -bare leaves the engines and the proxy measured beside the gateway
// out, so that a paired run gives direct, the gateway, nginx (and the
// baseline) more turns in the same time.
//
// -nginx-twin runs a second nginx, configured as the first, as contender
// nginx-twin, and prints its ratios to nginx by the statistics the
// targets use: what those ratios read when the two contenders do not
// differ (an A/A run of the yardstick):
//
//	go run ./test/gwbench -reps 3 -duration 4s -paired 100ms -bare -nginx-twin
//
// -probe URL drives one URL alone at -lat-rate and shows when its slow
// requests happened, to tell a server's periodic stalls from scheduling.
//
// -paired SLICE measures the latency runs in turns instead: every
// contender keeps its connections open, and each is driven for SLICE in
// turn, the order reversed each round, for -reps × -duration in all; each
// contender's latencies are pooled over its slices before the quantiles.
// A stall of the machine that lasts longer than a slice then falls on
// every contender alike, where in whole runs it lands in one (on two
// shared cores whole runs' p99s differ by 2×). Two more rows give the
// median turn's p99, and what it adds to direct's: a stall shorter than
// a turn lands in a few turns, which the median leaves out:
//
//	go run ./test/gwbench -reps 3 -duration 4s -paired 250ms
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fluxgate/fluxgate/internal/benchcert"
	pacing "github.com/fluxgate/fluxgate/internal/pace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/internal/freeport"
)

var (
	reps      = flag.Int("reps", 3, "interleaved repetitions of every measurement")
	duration  = flag.Duration("duration", 3*time.Second, "length of one measurement")
	conns     = flag.Int("conns", 50, "wrk connections for the throughput runs")
	fastDelay = flag.Duration("fast-delay", 2*time.Millisecond, "service time of the fast targets; the slow one takes 10×")
	lbRate    = flag.Float64("lb-rate", 400, "requests/s offered in the balancing runs")
	latRate   = flag.Float64("lat-rate", 0, "requests/s offered in the latency runs; 0 means half of the gateway's median throughput")
	proxyProf = flag.String("proxy-cpuprofile", "", "write a CPU profile of the proxy-only gateway here")
	bin       = flag.String("fluxgate", "", "fluxgate binary; empty builds ./cmd/fluxgate")
	baseline  = flag.String("baseline", "", "a second fluxgate binary, run beside the gateway as contender baseline (same engine and configuration) to compare two builds in one interleaved run")
	bare      = flag.Bool("bare", false, "only direct, the gateway, nginx and -baseline: no proxy-only, gateway-lean, gateway-fast or gateway-net beside them (more turns of each in the same time)")
	serveUp   = flag.String("serve-upstream", "", "internal: serve upstreams, addr=delay,…")
	serveGW   = flag.String("serve-proxy", "", "internal: serve gateway.New alone on -engine (no agent, no control point, no spans), listen=target")
	cpuProf   = flag.String("cpuprofile", "", "internal: with -serve-proxy, write a CPU profile here until SIGTERM")
	paired    = flag.Duration("paired", 0, "latency runs in turns of this length, pooled (see the package doc); 0: whole runs, one a repetition")
	probe     = flag.String("probe", "", "only drive this URL open loop at -lat-rate for -duration and show when the slow requests happened")
	evproxy   = flag.Bool("evproxy", false, "also measure test/gwbench/evproxy (issue 20, item 5 spike), built from its own module: on gnet event loops, and the same proxy on a goroutine a connection")
	engine    = flag.String("engine", defaultEngine(), "gateway.engine of the gateways measured (fast, lean or loop; by default the engine auto picks on this system); with lean, the fast engine runs too as gateway-fast; with loop, the lean engine as gateway-lean")
	tputOnly  = flag.Bool("throughput-only", false, "only the throughput runs (with CPU a request): no latency or balancing runs")
	tlsOn     = flag.Bool("tls", false, "terminate TLS on nginx and the gateways (self-signed ECDSA P-256), measure over https, and add gateway-net (gateway.engine: net) beside the gateway")
	h2On      = flag.Bool("h2", false, "implies -tls: measure HTTP/2 clients (ALPN h2) with h2load and an HTTP/2 latency driver; the upstream serves h2c too (with -serve-upstream)")
	h2cOn     = flag.Bool("h2c", false, "implies -h2 without TLS: HTTP/2 clients with prior knowledge over plain TCP; nginx listens with http2, the gateway with h2c and http2.server loop (on its event loops), gateway-h2 with h2c and http2.server lean (internal/h2)")
	h2Server  = flag.String("http2-server", "", "gateway.http2.server of the gateway under -h2 (loop: HTTP/2 on its event loops, and gateway-h2 beside it with lean, internal/h2); empty: the gateway's default. -h2c always uses loop")
	nginxTwin = flag.Bool("nginx-twin", false, "also run a second nginx (nginx-twin, the same configuration) and print its ratios to nginx by the same statistics as the gateway's: the spread the targets' ratios have when nothing differs")
	policyOn  = flag.String("policy", policyNone, "what decides at the gateways' control point: none (no policy), limit (a rate limiter keyed by X-User that never rejects; every driver sends X-User: alice) or full (limit, a flux meter and an adaptive concurrency limiter that never binds); the run fails unless the gateways decide so")
)

// srvTLS is the certificate the servers present under -tls; nil means
// plain HTTP.
var srvTLS *benchcert.Files

func main() {
	flag.Parse()
	log.SetFlags(0)
	switch {
	case *h2cOn:
		*h2On = true
	case *h2On:
		*tlsOn = true
	}
	if *serveUp != "" {
		log.Fatal(serveUpstreams(*serveUp))
	}
	if *serveGW != "" {
		log.Fatal(serveProxy(*serveGW, *cpuProf))
	}
	if *probe != "" {
		runProbe(*probe, *latRate, *duration)
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// serveUpstreams answers "ok" on every addr after its delay, with the
// address in X-Backend.
func serveUpstreams(spec string) error {
	errc := make(chan error)
	for _, s := range strings.Split(spec, ",") {
		addr, d, _ := strings.Cut(s, "=")
		delay, err := time.ParseDuration(d)
		if err != nil {
			return err
		}
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if delay > 0 && r.URL.Path != "/healthz" {
				time.Sleep(delay)
			}
			w.Header().Set("X-Backend", addr)
			_, _ = io.WriteString(w, "ok\n")
		})
		srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
		if *h2On { // h2c with prior knowledge beside HTTP/1.1, for h2load and the driver
			srv.Protocols = new(http.Protocols)
			srv.Protocols.SetHTTP1(true)
			srv.Protocols.SetUnencryptedHTTP2(true)
		}
		go func() { errc <- srv.ListenAndServe() }()
	}
	return <-errc
}

// freeAddr is a loopback address for a server a child process will bind:
// its port below the kernel's ephemeral range, which the drivers' own
// connections draw from (a port the kernel handed out and took back could
// be a client's by the time the child binds it).
func freeAddr() string {
	port, err := freeport.Pick()
	if err != nil {
		log.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// child starts a process that dies with this one.
func child(name string, cmd *exec.Cmd) (stop func(), err error) {
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pids[name] = cmd.Process.Pid
	return func() { _ = cmd.Process.Signal(syscall.SIGTERM); _, _ = cmd.Process.Wait() }, nil
}

// pids holds each child's process id by name, for its CPU time.
var pids = map[string]int{}

// metricsURLs holds each `fluxgate gateway`'s metrics URL by name, for
// the flux meter's count under -policy full.
var metricsURLs = map[string]string{}

// waitOK waits until url answers 200; an https url must also verify
// with srvTLS's roots and negotiate TLS 1.3, and h2 under -h2.
func waitOK(url string, d time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second}
	switch {
	case srvTLS != nil:
		client.Transport = &http.Transport{TLSClientConfig: srvTLS.ClientConfig(), ForceAttemptHTTP2: *h2On}
		defer client.CloseIdleConnections()
	case *h2cOn: // nginx's plain http2 listener speaks HTTP/2 only
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		client.Transport = tr
		defer client.CloseIdleConnections()
	}
	deadline := time.Now().Add(d)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK {
				switch {
				case strings.HasPrefix(url, "https://") && *h2On:
					return checkH2(url, resp.TLS)
				case strings.HasPrefix(url, "https://"):
					return checkTLS13(url, resp.TLS)
				}
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready: %w", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const gatewayConf = `server: {host: 127.0.0.1, http_port: %s, grpc_port: 0}
metrics: {port: %s}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %q}
log: {level: warn}
gateway:
  listen: %s
  engine: %s
  upstreams:
    - name: app
      algorithm: %s
      targets: [%s]
  routes:
    - {id: app, match: {path_prefix: /}, upstream: app, control_point: ingress}
`

// gatewayConfig is a `fluxgate gateway` configuration: the API on
// apiPort, metrics on metricsPort, the gateway on listen with engine and
// algorithm over targets, and gateway.tls with tf's files unless tf is
// nil.
func gatewayConfig(apiPort, metricsPort, policies, listen, engine, algorithm, targets string, tf *benchcert.Files) string {
	body := fmt.Sprintf(gatewayConf, apiPort, metricsPort, policies, listen, engine, algorithm, targets)
	if tf != nil {
		body += fmt.Sprintf("  tls: {cert_file: %q, key_file: %q}\n", tf.Cert, tf.Key)
	}
	return body
}

// http2Config is what a gateway's configuration adds for HTTP/2 clients:
// under -h2c, h2c and HTTP/2 on the loops (http2.server loop); under -h2,
// -http2-server if set. The engine e "h2" is gateway-h2's: internal/h2
// serves its HTTP/2 (http2.server lean; the lean engine under -h2c).
func http2Config(e string) (gwEngine, extra string) {
	gwEngine, server := e, *h2Server
	if *h2cOn {
		server, extra = gateway.HTTP2ServerLoop, "  h2c: true\n"
	}
	if e == "h2" {
		gwEngine, server = *engine, gateway.HTTP2ServerLean
		if *h2cOn {
			gwEngine = gateway.EngineLean
		}
	}
	if server != "" {
		extra += "  http2: {server: " + server + "}\n"
	}
	return gwEngine, extra
}

// h2Beside reports whether gateway-h2 runs: HTTP/2 on the gateway's loops
// is measured against internal/h2.
func h2Beside() bool { return *h2cOn || *h2On && *h2Server == gateway.HTTP2ServerLoop }

const nginxConf = `daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  upstream app { server %[2]s; keepalive 128; }
  server {
    listen %[3]s%[4]s;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`

func run() error {
	if _, err := policyText(*policyOn); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fluxgate-gwbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (Debian package wrk)")
	}
	if _, err := exec.LookPath("h2load"); err != nil && *h2On {
		return errors.New("h2load is not installed (Debian package nghttp2-client; `make deps` installs it)")
	}
	if *tlsOn {
		if *evproxy {
			return errors.New("-evproxy serves plain HTTP only: run it without -tls")
		}
		if srvTLS, err = benchcert.Write(dir, "gwbench", time.Now()); err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
	}
	if *bin == "" {
		*bin = filepath.Join(dir, "fluxgate")
		build := exec.Command("go", "build", "-o", *bin, "./cmd/fluxgate")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build fluxgate: %w", err)
		}
	}
	if *evproxy {
		build := exec.Command("go", "build", "-C", "test/gwbench/evproxy", "-o", filepath.Join(dir, "evproxy"), ".")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build evproxy (run gwbench from the repository's root): %w", err)
		}
	}
	var stops []func()
	defer func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}()
	start := func(name string, cmd *exec.Cmd) error {
		s, err := child(name, cmd)
		if err == nil {
			stops = append(stops, s)
		}
		return err
	}
	b, err := startBench(dir, start)
	if err != nil {
		return err
	}
	stolen := stealMeter()
	pr, err := measureProxying(b.urls)
	if err != nil {
		return err
	}
	if *tputOnly {
		printThroughput(pr)
		return nil
	}
	lb, err := measureBalancing(b.urls, b.slow)
	if err != nil {
		return err
	}
	printResults(pr, lb)
	if s, ok := stolen(); ok {
		fmt.Printf("\nCPU time stolen by the hypervisor during the measurements: %.1f%%\n", s)
	}
	return nil
}

// bench is what startBench started: the URLs of the proxying and
// balancing runs by contender (direct, gateway, nginx, proxy-only, …,
// round-robin, adaptive) and the slow balancing target.
type bench struct {
	urls map[string]string
	slow string
}

// startBench starts the upstreams, the gateways, nginx and the bare proxy
// with start, and waits until each answers.
func startBench(dir string, start func(string, *exec.Cmd) error) (*bench, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Upstreams: one without delay for the proxying runs, four for the
	// balancing runs, the last slowed 10×.
	direct := freeAddr()
	lb := []string{freeAddr(), freeAddr(), freeAddr(), freeAddr()}
	slow := lb[3]
	spec := []string{direct + "=0s"}
	for i, a := range lb {
		d := *fastDelay
		if i == 3 {
			d *= 10
		}
		spec = append(spec, a+"="+d.String())
	}
	if err := start("upstreams", exec.Command(self, "-serve-upstream", strings.Join(spec, ","), "-h2="+strconv.FormatBool(*h2On))); err != nil {
		return nil, err
	}
	gw, err := startGateways(dir, direct, lb, start)
	if err != nil {
		return nil, err
	}
	urls := map[string]string{"direct": "http://" + direct + "/"}
	for _, name := range contenders() {
		if name != "nginx" && name != "nginx-twin" {
			continue
		}
		listen, err := startNginx(dir, name, direct, start)
		if err != nil {
			return nil, err
		}
		urls[name] = scheme() + listen + "/"
	}
	for name, addr := range gw {
		urls[name] = scheme() + addr + "/"
	}
	if slices.Contains(contenders(), "proxy-only") {
		proxyOnly := freeAddr()
		if err := start("proxy-only", exec.Command(self, "-serve-proxy", proxyOnly+"="+direct, "-cpuprofile", *proxyProf, "-engine", *engine)); err != nil {
			return nil, err
		}
		urls["proxy-only"] = "http://" + proxyOnly + "/"
	}
	if *evproxy {
		for name, engine := range map[string]string{"evproxy": "gnet", "evproxy-gr": "goroutines"} {
			ev := freeAddr()
			if err := start(name, exec.Command(filepath.Join(dir, "evproxy"), "-engine", engine, ev, direct)); err != nil {
				return nil, err
			}
			urls[name] = "http://" + ev + "/"
		}
	}
	for _, u := range urls {
		if err := waitOK(u, 30*time.Second); err != nil {
			return nil, err
		}
	}
	for name := range gw { // the policy decides in every fluxgate gateway
		if err := verifyPolicy(urls[name], metricsURLs[name], *policyOn); err != nil {
			return nil, err
		}
	}
	return &bench{urls: urls, slow: slow}, nil
}

// scheme is the proxies' URL scheme: https under -tls.
func scheme() string {
	if srvTLS != nil {
		return "https://"
	}
	return "http://"
}

// startGateways starts the three `fluxgate gateway` processes and returns
// their listen addresses by name.
func startGateways(dir, direct string, lb []string, start func(string, *exec.Cmd) error) (map[string]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		return nil, err
	}
	if text, _ := policyText(*policyOn); text != "" { // checked in run
		if err := os.WriteFile(filepath.Join(dir, "policies", "gwbench.yaml"), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	gw := map[string]string{} // name → listen address
	type gwProc struct{ name, algorithm, targets, engine, bin string }
	gws := []gwProc{
		{"gateway", "round-robin", "{address: " + direct + "}", *engine, *bin},
		{"round-robin", "round-robin", targetList(lb), *engine, *bin},
		{"adaptive", "adaptive", targetList(lb), *engine, *bin},
	}
	for _, name := range contenders() {
		if e, ok := strings.CutPrefix(name, "gateway-"); ok {
			gws = append(gws, gwProc{name, "round-robin", "{address: " + direct + "}", e, *bin})
		}
		if name == "baseline" {
			gws = append(gws, gwProc{name, "round-robin", "{address: " + direct + "}", *engine, *baseline})
		}
	}
	for _, g := range gws {
		listen, api, metrics := freeAddr(), freeAddr(), freeAddr()
		_, apiPort, _ := net.SplitHostPort(api)
		_, metricsPort, _ := net.SplitHostPort(metrics)
		conf := filepath.Join(dir, g.name+".yaml")
		engine, extra := g.engine, ""
		if *h2On {
			engine, extra = http2Config(g.engine)
		}
		body := gatewayConfig(apiPort, metricsPort, filepath.Join(dir, "policies"), listen, engine, g.algorithm, g.targets, srvTLS) + extra
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			return nil, err
		}
		if err := start(g.name, exec.Command(g.bin, "gateway", "--config", conf)); err != nil {
			return nil, err
		}
		gw[g.name] = listen
		metricsURLs[g.name] = "http://" + metrics + "/metrics"
	}
	return gw, nil
}

// nginxConfig is nginx's configuration: prefix dir, proxy_pass to
// upstream over a keep-alive pool, listening on listen, with ssl and tf's
// files unless tf is nil (HTTP/1.1 only: nginx's default without http2).
// ssl_protocols is the gateway's (TLS 1.2 and 1.3): nginx before 1.23.4,
// Debian 12's 1.22 among them, leaves TLS 1.3 out by default.
//
// With h2 (and tf), the listener offers h2 by ALPN: `listen … ssl http2`,
// the only spelling nginx 1.22 knows (1.25.1 added the `http2` directive
// and warns about the parameter, but still accepts it); and
// keepalive_requests, which caps HTTP/2 requests a connection too (1000
// by default), is lifted: nginx would close every connection with GOAWAY
// after 1000 requests, and h2load, which does not reconnect in a timed
// run, would stop there, while the gateway has no such limit.
func nginxConfig(dir, upstream, listen string, tf *benchcert.Files, h2 bool) string {
	ssl := ""
	if tf == nil && h2 { // h2c with prior knowledge (-h2c)
		ssl = " http2;\n    keepalive_requests 1000000000"
	}
	if tf != nil {
		ssl = " ssl"
		if h2 {
			ssl += " http2;\n    keepalive_requests 1000000000"
		}
		ssl += fmt.Sprintf(";\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_certificate %s;\n    ssl_certificate_key %s", tf.Cert, tf.Key)
	}
	return fmt.Sprintf(nginxConf, dir, upstream, listen, ssl)
}

// startNginx starts nginx as contender name in front of direct and
// returns its address.
func startNginx(dir, name, direct string, start func(string, *exec.Cmd) error) (string, error) {
	nginxBin, err := exec.LookPath("nginx")
	if err != nil {
		nginxBin = "/usr/sbin/nginx"
	}
	ngDir := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(ngDir, "tmp"), 0o755); err != nil {
		return "", err
	}
	ngListen := freeAddr()
	if err := os.WriteFile(filepath.Join(ngDir, "nginx.conf"), []byte(nginxConfig(ngDir, direct, ngListen, srvTLS, *h2On)), 0o644); err != nil {
		return "", err
	}
	if err := start(name, exec.Command(nginxBin, "-p", ngDir, "-e", filepath.Join(ngDir, "error.log"), "-c", filepath.Join(ngDir, "nginx.conf"))); err != nil {
		return "", err
	}
	return ngListen, nil
}

// proxying holds the proxying runs' samples by target: throughput, then
// p50 and p99 at half (half the gateway's throughput, or -lat-rate), and
// the p99 each proxy adds to the direct one.
type proxying struct {
	rps, p50, p99 map[string][]float64
	user, sys     map[string][]float64 // CPU µs a request of the server measured
	half          float64
	added         map[string][]float64 // p99 − direct's p99 in the same repetition, ms
	streams       int                  // under -h2, the streams a connection of rps, user and sys
	sliceP99      map[string][]float64 // under -paired, each turn's p99, ms
	more          []*proxying          // under -h2, the throughput runs with more streams a connection
}

func newProxying(streams int) *proxying {
	return &proxying{rps: map[string][]float64{}, p50: map[string][]float64{}, p99: map[string][]float64{},
		user: map[string][]float64{}, sys: map[string][]float64{}, added: map[string][]float64{}, streams: streams}
}

// throughput runs the closed-loop load on url, with wrk, or h2load with
// streams a connection under -h2, and samples proc's CPU time around it.
func (pr *proxying) throughput(rep int, name, url string) error {
	proc := name
	if name == "direct" {
		proc = "upstreams"
	}
	tool, load := "wrk", func() (float64, float64, error) { return wrk(url, *conns, *duration) }
	if *h2On {
		tool = fmt.Sprintf("h2load -m %d", pr.streams)
		load = func() (float64, float64, error) { return h2load(url, *conns, pr.streams, *duration) }
	}
	metered := *policyOn == policyFull && metricsURLs[name] != ""
	var counted float64
	if metered {
		c, err := fluxMeterCount(metricsURLs[name])
		if err != nil {
			return err
		}
		counted = c
	}
	before := cpuTime(pids[proc])
	r, n, err := load()
	if err != nil {
		return fmt.Errorf("%s %s: %w", tool, name, err)
	}
	used := cpuTime(pids[proc]).minus(before).per(n)
	if metered { // every answered request was a flow the flux meter measured
		if err := waitFluxMeter(metricsURLs[name], counted, n); err != nil {
			return fmt.Errorf("%s %s: %w", tool, name, err)
		}
	}
	log.Printf("rep %d throughput %-8s %8.0f req/s, CPU %.1f µs user + %.1f µs system a request (%s)", rep+1, name, r, used.user, used.sys, tool)
	pr.rps[name] = append(pr.rps[name], r)
	pr.user[name] = append(pr.user[name], used.user)
	pr.sys[name] = append(pr.sys[name], used.sys)
	return nil
}

func measureProxying(urls map[string]string) (*proxying, error) {
	order := contenders()
	pr := newProxying(1)
	if *h2On {
		for _, m := range h2Streams[1:] {
			pr.more = append(pr.more, newProxying(m))
		}
	}
	for rep := range *reps {
		for _, name := range rotate(order, rep) {
			for _, p := range append([]*proxying{pr}, pr.more...) {
				if err := p.throughput(rep, name, urls[name]); err != nil {
					return nil, err
				}
			}
		}
	}
	if *tputOnly {
		return pr, nil
	}
	pr.half = median(pr.rps["gateway"]) / 2
	if *latRate > 0 {
		pr.half = *latRate
	}
	if *paired > 0 {
		return pr, pr.pairedLatency(order, urls)
	}
	for rep := range *reps {
		got := map[string]result{}
		for _, name := range rotate(order, rep) {
			res, err := openLoop(urls[name], pr.half, *duration, "")
			if err != nil {
				return nil, fmt.Errorf("latency %s: %w", name, err)
			}
			log.Printf("rep %d at %.0f/s %-8s p50 %.3f ms p99 %.3f ms errors %d", rep+1, pr.half, name, ms(res.p50), ms(res.p99), res.errors)
			got[name] = res
			pr.p50[name] = append(pr.p50[name], ms(res.p50))
			pr.p99[name] = append(pr.p99[name], ms(res.p99))
		}
		for _, name := range order[1:] {
			pr.added[name] = append(pr.added[name], ms(got[name].p99-got["direct"].p99))
		}
	}
	return pr, nil
}

// pairedLatency drives each contender at pr.half in turns of -paired
// (see the package doc) and records each one's pooled p50 and p99, and
// the p99 it adds to direct's, as one sample.
func (pr *proxying) pairedLatency(order []string, urls map[string]string) error {
	sends := map[string][]func() (ok, slowHit bool){}
	for _, name := range order {
		var send []func() (ok, slowHit bool)
		var closeAll func()
		if *h2On {
			var err error
			if send, closeAll, err = h2Workers(urls[name], *conns, ""); err != nil {
				return fmt.Errorf("latency %s: %w", name, err)
			}
		} else {
			send, closeAll = fastWorkers(urls[name], *conns, "")
		}
		defer closeAll()
		sends[name] = send
	}
	rounds := max(1, int(time.Duration(*reps)*(*duration) / *paired))
	lat, errs := map[string][]time.Duration{}, map[string]int{}
	sliceP99 := map[string][]float64{}
	turns := slices.Clone(order)
	for range rounds {
		for _, name := range turns {
			res := pace(pr.half, *paired, sends[name])
			lat[name] = append(lat[name], res.lat...)
			errs[name] += res.errors
			sliceP99[name] = append(sliceP99[name], ms(res.p99))
		}
		slices.Reverse(turns)
	}
	pr.sliceP99 = sliceP99
	p99 := map[string]time.Duration{}
	for _, name := range order {
		l := lat[name]
		slices.Sort(l)
		n := len(l)
		p50 := l[n/2]
		p99[name] = l[min(n-1, n*99/100)]
		turnP99 := slices.Sorted(slices.Values(sliceP99[name]))
		log.Printf("paired at %.0f/s %-8s p50 %.3f ms p99 %.3f ms over %d requests in %d slices of %v, errors %d; turns' p99 median %.3f, 9th decile %.3f, max %.3f ms",
			pr.half, name, ms(p50), ms(p99[name]), n, rounds, *paired, errs[name],
			turnP99[len(turnP99)/2], turnP99[len(turnP99)*9/10], turnP99[len(turnP99)-1])
		pr.p50[name] = append(pr.p50[name], ms(p50))
		pr.p99[name] = append(pr.p99[name], ms(p99[name]))
	}
	for _, name := range order[1:] {
		pr.added[name] = append(pr.added[name], ms(p99[name]-p99["direct"]))
	}
	return nil
}

// balancing holds the balancing runs' samples by algorithm.
type balancing struct {
	p50, p99, slow map[string][]float64
}

func measureBalancing(urls map[string]string, slow string) (*balancing, error) {
	lb := &balancing{p50: map[string][]float64{}, p99: map[string][]float64{}, slow: map[string][]float64{}}
	for rep := range *reps {
		for _, name := range rotate([]string{"round-robin", "adaptive"}, rep) {
			url := urls[name]
			if _, err := openLoop(url, *lbRate, time.Second, slow); err != nil { // warm up: the balancer learns
				return nil, fmt.Errorf("balancing %s: %w", name, err)
			}
			res, err := openLoop(url, *lbRate, *duration, slow)
			if err != nil {
				return nil, fmt.Errorf("balancing %s: %w", name, err)
			}
			log.Printf("rep %d balancing %-11s p50 %.2f ms p99 %.2f ms slow share %.1f%% errors %d",
				rep+1, name, ms(res.p50), ms(res.p99), 100*res.slowShare, res.errors)
			lb.p99[name] = append(lb.p99[name], ms(res.p99))
			lb.p50[name] = append(lb.p50[name], ms(res.p50))
			lb.slow[name] = append(lb.slow[name], 100*res.slowShare)
		}
	}
	return lb, nil
}

// contenders are the proxying runs' targets, in the order of the first
// repetition; direct first. Under -tls, proxy-only (gateway.New on a
// plain listener) is left out and gateway-net, the net/http engine,
// runs beside the gateway instead of gateway-fast.
func contenders() []string {
	order := []string{"direct", "gateway", "nginx"}
	if *nginxTwin {
		order = append(order, "nginx-twin")
	}
	if *baseline != "" {
		order = append(order, "baseline")
	}
	switch {
	case *bare:
	case h2Beside(): // the loops' HTTP/2 against internal/h2's
		order = append(order, "gateway-h2")
	case srvTLS != nil:
		if *engine != gateway.EngineNet {
			order = append(order, "gateway-"+gateway.EngineNet)
		}
	default:
		order = append(order, "proxy-only")
		switch *engine {
		case gateway.EngineFast:
		case gateway.EngineLoop: // the loop engine against the lean one it hands to
			order = append(order, "gateway-"+gateway.EngineLean)
		default:
			order = append(order, "gateway-"+gateway.EngineFast)
		}
	}
	if *evproxy {
		order = append(order, "evproxy", "evproxy-gr")
	}
	return order
}

// heading says how the contenders were driven in pr, for the tables.
func heading(pr *proxying) string {
	how := "plain HTTP/1.1, keep-alive"
	if srvTLS != nil {
		how = tlsLabel + "; direct is plain HTTP, the upstream's own cost"
	}
	if *h2On {
		label := h2Label
		if *h2cOn {
			label = h2cLabel
		}
		return fmt.Sprintf("Medians of %d interleaved repetitions, %s each, %d connections of %d stream(s) each, %s; %s:", *reps, *duration, *conns, pr.streams, label, policyLabel(*policyOn))
	}
	return fmt.Sprintf("Medians of %d interleaved repetitions, %s each, %d wrk connections, %s; %s:", *reps, *duration, *conns, how, policyLabel(*policyOn))
}

// printThroughput prints the throughput runs alone (-throughput-only):
// each contender's requests/s and CPU a request, and its ratios to nginx;
// under -h2, a table for each number of streams a connection.
func printThroughput(pr *proxying) {
	throughputTable(pr)
	for _, p := range pr.more {
		throughputTable(p)
	}
	fmt.Println("\ndirect's CPU is the upstream's own; the others' exclude the upstream's.")
	tlsNote()
	baselineNote(os.Stdout, pr)
	twinNote(os.Stdout, pr)
}

func throughputTable(pr *proxying) {
	fmt.Printf("\n%s\n\n", heading(pr))
	fmt.Println("| contender | req/s | ×nginx | CPU µs user a request | system | total | ×nginx total |")
	fmt.Println("|---|---|---|---|---|---|---|")
	ng := median(pr.rps["nginx"])
	ngCPU := median(pr.user["nginx"]) + median(pr.sys["nginx"])
	for _, name := range contenders() {
		r, u, sy := median(pr.rps[name]), median(pr.user[name]), median(pr.sys[name])
		fmt.Printf("| %s | %.0f | %.2f | %.1f | %.1f | %.1f | %.2f |\n", name, r, r/ng, u, sy, u+sy, (u+sy)/ngCPU)
	}
}

// addedVerdict is the added-p99 row's ratio and target: the gateway's
// added p99 over nginx's, none when nginx's p99 was not above direct's
// (a ratio to a number at or below zero says nothing).
func addedVerdict(added map[string][]float64) string { return addedRatio(added, "gateway") }

// addedRatio is name's added p99 over nginx's and the target, as
// addedVerdict gives the gateway's.
func addedRatio(added map[string][]float64, name string) string {
	ng := median(added["nginx"])
	if ng <= 0 {
		return fmt.Sprintf("none: nginx added %.3f ms | ≤ 1.2 ?", ng)
	}
	r := median(added[name]) / ng
	return fmt.Sprintf("%.2f | ≤ 1.2 %s", r, mark(r <= 1.2))
}

// twinNote prints, under -nginx-twin, nginx-twin's ratios to nginx by the
// targets' statistics: throughput, the pooled added p99 and, when paired,
// the median turn's — what each ratio reads between two contenders that
// do not differ.
func twinNote(w io.Writer, pr *proxying) {
	if !*nginxTwin {
		return
	}
	fmt.Fprintf(w, "\nnginx-twin against nginx (the same server twice): throughput %.2f×", median(pr.rps["nginx-twin"])/median(pr.rps["nginx"]))
	if len(pr.added["nginx-twin"]) > 0 {
		fmt.Fprintf(w, "; added p99 %s", addedRatio(pr.added, "nginx-twin"))
	}
	if pr.sliceP99 != nil {
		d := median(pr.sliceP99["direct"])
		added := map[string][]float64{}
		for _, n := range []string{"nginx", "nginx-twin"} {
			added[n] = []float64{median(pr.sliceP99[n]) - d}
		}
		fmt.Fprintf(w, "; added p99 of the median turn %s", addedRatio(added, "nginx-twin"))
	}
	fmt.Fprintln(w)
}

// baselineNote prints, under -baseline, the gateway's figures against
// the baseline build's from the same runs: throughput and CPU a request
// as ratios, the added p99s (pooled, and the median turn's when paired)
// side by side, as either may be at or below zero.
func baselineNote(w io.Writer, pr *proxying) {
	if *baseline == "" {
		return
	}
	cpu := func(n string) float64 { return median(pr.user[n]) + median(pr.sys[n]) }
	fmt.Fprintf(w, "\nThe gateway against the baseline build (-baseline %s): throughput %.2f×, CPU a request %.2f×",
		*baseline, median(pr.rps["gateway"])/median(pr.rps["baseline"]), cpu("gateway")/cpu("baseline"))
	if len(pr.added["baseline"]) > 0 {
		fmt.Fprintf(w, "; added p99 %.3f against %.3f ms", median(pr.added["gateway"]), median(pr.added["baseline"]))
	}
	if pr.sliceP99 != nil {
		d := median(pr.sliceP99["direct"])
		fmt.Fprintf(w, "; added p99 of the median turn %.3f against %.3f ms", median(pr.sliceP99["gateway"])-d, median(pr.sliceP99["baseline"])-d)
	}
	fmt.Fprintln(w)
}

// tlsNote says, under -tls, what the TLS tables leave out.
func tlsNote() {
	if *h2On {
		fmt.Println("Under -h2, the proxies' upstream side stays HTTP/1.1; the balancing runs speak HTTP/2 too.")
	}
	if srvTLS != nil {
		fmt.Println("Under -tls, proxy only (gateway.New alone, which serves a plain listener) is left out; gateway-net is the same gateway with gateway.engine: net.")
	}
}

func printResults(pr *proxying, lb *balancing) {
	rps, p50, p99, half := pr.rps, pr.p50, pr.p99, pr.half
	// Columns: direct, gateway, nginx, then proxy only (plain) or
	// gateway-net (-tls).
	cols := slices.DeleteFunc(contenders(), func(n string) bool {
		return n == "gateway-"+gateway.EngineFast || strings.HasPrefix(n, "evproxy")
	})
	row := func(what string, of func(string) float64, format, ratio string) {
		fmt.Printf("| %s |", what)
		for _, n := range cols {
			if _, ok := pr.added[n]; !ok && strings.HasPrefix(what, "added") {
				fmt.Print(" |") // direct adds nothing to itself
				continue
			}
			fmt.Printf(" "+format+" |", of(n))
		}
		fmt.Printf(" %s |\n", ratio)
	}
	fmt.Printf("\n%s\n\n", heading(pr))
	fmt.Printf("| measurement | %s | gateway/nginx | target |\n", strings.ReplaceAll(strings.Join(cols, " | "), "proxy-only", "proxy only"))
	fmt.Printf("|---|%s---|---|\n", strings.Repeat("---|", len(cols)))
	ratio := func(m map[string][]float64) float64 { return median(m["gateway"]) / median(m["nginx"]) }
	tput := ratio(rps)
	row("throughput, req/s", func(n string) float64 { return median(rps[n]) }, "%.0f", fmt.Sprintf("%.2f | ≥ 0.9 %s", tput, mark(tput >= 0.9)))
	row("CPU a request, µs user (direct: the upstream)", func(n string) float64 { return median(pr.user[n]) }, "%.1f", fmt.Sprintf("%.2f | ", ratio(pr.user)))
	row("CPU a request, µs system", func(n string) float64 { return median(pr.sys[n]) }, "%.1f", fmt.Sprintf("%.2f | ", ratio(pr.sys)))
	row(fmt.Sprintf("p50 at %.0f req/s, ms", half), func(n string) float64 { return median(p50[n]) }, "%.3f", " | ")
	row(fmt.Sprintf("p99 at %.0f req/s, ms", half), func(n string) float64 { return median(p99[n]) }, "%.3f", fmt.Sprintf("%.2f | ", ratio(p99)))
	row(fmt.Sprintf("added p99 at %.0f req/s, ms", half), func(n string) float64 { return median(pr.added[n]) }, "%.3f", addedVerdict(pr.added))
	if pr.sliceP99 != nil {
		// The median turn's p99: what a stall of the machine in a few
		// turns does not move.
		added := map[string][]float64{}
		for _, n := range cols[1:] {
			added[n] = []float64{median(pr.sliceP99[n]) - median(pr.sliceP99["direct"])}
		}
		row(fmt.Sprintf("p99 of the median turn at %.0f req/s, ms", half), func(n string) float64 { return median(pr.sliceP99[n]) }, "%.3f", fmt.Sprintf("%.2f | ", ratio(pr.sliceP99)))
		row(fmt.Sprintf("added p99 of the median turn at %.0f req/s, ms", half), func(n string) float64 { return median(added[n]) }, "%.3f", addedVerdict(added))
	}
	fmt.Println("\nTargets are issue 20's (issue 6 asked for 0.7× nginx's throughput and ≤ 1 ms added p99).")
	if *paired > 0 {
		fmt.Printf("The p50, p99 and added p99 rows are paired (-paired): each contender's latencies pooled over its turns of %s, %s in all each, not medians of repetitions.\n", *paired, time.Duration(*reps)*(*duration))
	}
	tlsNote()
	baselineNote(os.Stdout, pr)
	twinNote(os.Stdout, pr)
	for _, p := range pr.more {
		throughputTable(p)
	}
	if *evproxy {
		for _, name := range []string{"evproxy", "evproxy-gr"} {
			fmt.Printf("\n%s: %.0f req/s (%.2f× nginx), CPU %.1f µs user + %.1f µs system a request, p99 at %.0f req/s %.3f ms (nginx %.3f)\n",
				name, median(rps[name]), median(rps[name])/median(rps["nginx"]), median(pr.user[name]), median(pr.sys[name]), half, median(p99[name]), median(p99["nginx"]))
		}
	}
	fmt.Printf("\nFour targets (%s, one %s) at %.0f req/s open loop:\n\n", *fastDelay, *fastDelay*10, *lbRate)
	fmt.Println("| algorithm | p50 ms | p99 ms | slow target share |")
	fmt.Println("|---|---|---|---|")
	for _, name := range []string{"round-robin", "adaptive"} {
		fmt.Printf("| %s | %.2f | %.2f | %.1f%% |\n", name, median(lb.p50[name]), median(lb.p99[name]), median(lb.slow[name]))
	}
	cut := 1 - median(lb.p99["adaptive"])/median(lb.p99["round-robin"])
	fmt.Printf("\nadaptive cuts p99 by %.0f%% (target ≥ 40%% %s)\n", 100*cut, mark(cut >= 0.4))
}

// serveProxy runs gateway.New alone in front of target: the proxy, its
// balancer and metrics, without the agent's control point, flow spans
// and TSDB, to show what those cost in `fluxgate gateway`.
func serveProxy(spec, profile string) error {
	listen, target, _ := strings.Cut(spec, "=")
	g, err := gateway.New(gateway.Options{
		Config: gateway.Config{
			Upstreams: []gateway.UpstreamConfig{{Name: "app", Targets: []gateway.TargetConfig{{Address: target}}}},
			Routes:    []gateway.RouteConfig{{ID: "app", Match: gateway.RouteMatch{PathPrefix: "/"}, Upstream: "app"}},
		},
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		return err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM)
			<-sig
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "gwbench: cpu profile:", err)
			}
			os.Exit(0)
		}()
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	switch *engine {
	case gateway.EngineLean:
		return g.NewLeanServer(nil).Serve(ln)
	case gateway.EngineLoop:
		ls, err := g.NewLoopServer(nil, 0)
		if err != nil {
			return err
		}
		return ls.Serve(ln)
	}
	return g.NewFastServer(log.Default()).Serve(gateway.FastListener(ln))
}

func targetList(addrs []string) string {
	var out []string
	for _, a := range addrs {
		out = append(out, "{address: "+a+"}")
	}
	return strings.Join(out, ", ")
}

// rotate starts the order at a different contender each repetition.
func rotate(order []string, rep int) []string {
	k := rep % len(order)
	return append(slices.Clone(order[k:]), order[:k]...)
}

var rpsRe = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

var requestsRe = regexp.MustCompile(`([0-9]+) requests in`)

// wrk runs a closed-loop keep-alive load and returns requests/s and the
// requests answered.
func wrk(url string, c int, d time.Duration) (rps, requests float64, err error) {
	secs := strconv.Itoa(max(1, int(d.Seconds())))
	args := []string{"-t2", "-c" + strconv.Itoa(c), "-d" + secs + "s"}
	if withUser() {
		args = append(args, "-H", userHeader+": "+userValue)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, out)
	}
	if strings.Contains(string(out), "Non-2xx") && withUser() {
		// A policy that never rejects answered something else than 2xx:
		// the run would not measure what it says.
		return 0, 0, fmt.Errorf("wrk %s: answers other than 2xx under -policy %s:\n%s", url, *policyOn, out)
	}
	if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		log.Printf("wrk %s reported errors:\n%s", url, out)
	}
	m, n := rpsRe.FindSubmatch(out), requestsRe.FindSubmatch(out)
	if m == nil || n == nil {
		return 0, 0, fmt.Errorf("no Requests/sec in: %s", out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	requests, _ = strconv.ParseFloat(string(n[1]), 64)
	return rps, requests, nil
}

type result struct {
	p50, p99  time.Duration
	lat       []time.Duration // per request, in send order
	interval  time.Duration   // between intended send times
	errors    int
	slowShare float64 // share of answers with X-Backend == slow
}

// openLoop sends rate requests/s for d over a fixed pool of conns
// keep-alive connections (as many as wrk has in the throughput runs),
// the way wrk2 does: a pacer hands out each request's intended send time,
// a free connection sends it, and latency counts from the intended time,
// so a stall of the server (or of this driver) is counted, not hidden.
// A goroutine and a connection per request, as before, cost the shared
// cores more than the proxies being measured at a few thousand
// requests/s. The connections speak HTTP/1.1 (fasthttp's client), or
// HTTP/2 under -h2 (h2Workers).
func openLoop(url string, rate float64, d time.Duration, slow string) (result, error) {
	if !*h2On {
		send, closeAll := fastWorkers(url, *conns, slow)
		defer closeAll()
		return pace(rate, d, send), nil
	}
	send, closeAll, err := h2Workers(url, *conns, slow)
	if err != nil {
		return result{}, err
	}
	defer closeAll()
	return pace(rate, d, send), nil
}

// fastWorkers are n senders sharing a fasthttp client of n connections
// to url, opened before they are returned when url is https.
func fastWorkers(url string, n int, slow string) (send []func() (ok, slowHit bool), closeAll func()) {
	// fasthttp's client costs the shared CPU a fraction of net/http's.
	client := &fasthttp.Client{MaxConnsPerHost: n, MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true}
	if strings.HasPrefix(url, "https://") {
		if srvTLS != nil { // else (-probe) the system roots
			client.TLSConfig = srvTLS.ClientConfig()
		}
		warmUp(client, url)
	}
	var reqs []*fasthttp.Request
	var resps []*fasthttp.Response
	for range n {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		reqs, resps = append(reqs, req), append(resps, resp)
		send = append(send, func() (ok, slowHit bool) {
			defer resp.Reset()
			req.SetRequestURI(url)
			if withUser() {
				req.Header.Set(userHeader, userValue)
			}
			if err := client.DoTimeout(req, resp, 10*time.Second); err != nil {
				return false, false
			}
			return resp.StatusCode() == http.StatusOK, slow != "" && string(resp.Header.Peek("X-Backend")) == slow
		})
	}
	return send, func() {
		for i := range reqs {
			fasthttp.ReleaseRequest(reqs[i])
			fasthttp.ReleaseResponse(resps[i])
		}
		client.CloseIdleConnections()
	}
}

// pace sends rate requests/s for d, each with the first of send that is
// free (one goroutine each), and measures each request's latency from its
// intended send time.
func pace(rate float64, d time.Duration, send []func() (ok, slowHit bool)) result {
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	lat := make([]time.Duration, n)
	failed := make([]bool, n)
	slowHit := make([]bool, n)
	due := make(chan int, n)
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range send {
		wg.Go(func() {
			for i := range due {
				var ok bool
				ok, slowHit[i] = s()
				failed[i] = !ok
				lat[i] = time.Since(start.Add(time.Duration(i) * interval))
			}
		})
	}
	runtime.LockOSThread() // pacing.Until sleeps the thread
	for i := range n {
		pacing.Until(start.Add(time.Duration(i) * interval))
		due <- i
	}
	runtime.UnlockOSThread()
	close(due)
	wg.Wait()
	res := result{lat: slices.Clone(lat), interval: interval}
	hits := 0
	for i := range n {
		if failed[i] {
			res.errors++
		}
		if slowHit[i] {
			hits++
		}
	}
	slices.Sort(lat)
	res.p50 = lat[n/2]
	res.p99 = lat[min(n-1, n*99/100)]
	res.slowShare = float64(hits) / float64(n)
	return res
}

// warmUp opens (up to) -conns keep-alive connections to url before an
// open-loop run: each TLS handshake costs the server a signature, and the
// first requests would otherwise queue behind fifty of them, which is not
// the proxying latency measured.
func warmUp(client *fasthttp.Client, url string) {
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			_ = client.DoTimeout(req, resp, 10*time.Second) // a failure shows in the run itself
		})
	}
	wg.Wait()
}

// runProbe drives url alone and prints the latency quantiles and, per
// 100 ms of intended send time, how many requests took over 2 ms more
// than the median: periodic clusters point at something the server does
// on a timer, scattered ones at scheduling.
func runProbe(url string, rate float64, d time.Duration) {
	if rate <= 0 {
		rate = 2000
	}
	res, err := openLoop(url, rate, d, "")
	if err != nil {
		log.Fatal(err)
	}
	sorted := slices.Sorted(slices.Values(res.lat))
	q := func(f float64) float64 { return ms(sorted[min(len(sorted)-1, int(f*float64(len(sorted))))]) }
	fmt.Printf("%d requests at %.0f/s, errors %d: p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f ms\n",
		len(sorted), rate, res.errors, q(0.5), q(0.9), q(0.99), q(0.999), ms(sorted[len(sorted)-1]))
	slowOver := res.p50 + 2*time.Millisecond
	window := 100 * time.Millisecond
	type cluster struct {
		n     int
		worst time.Duration
	}
	clusters := map[int]*cluster{}
	for i, l := range res.lat {
		if l <= slowOver {
			continue
		}
		w := int(time.Duration(i) * res.interval / window)
		c := clusters[w]
		if c == nil {
			c = &cluster{}
			clusters[w] = c
		}
		c.n++
		c.worst = max(c.worst, l)
	}
	fmt.Printf("requests over %.3f ms by 100 ms window of send time:\n", ms(slowOver))
	for _, w := range slices.Sorted(maps.Keys(clusters)) {
		fmt.Printf("  %6.1f s  %4d  worst %.3f ms\n", (time.Duration(w) * window).Seconds(), clusters[w].n, ms(clusters[w].worst))
	}
}

// stealMeter returns a function that reports the share of CPU time the
// hypervisor took (the "steal" column of /proc/stat) since it was called:
// on a shared VM that time shows up as stalls in every contender's tail.
func stealMeter() func() (pct float64, ok bool) {
	read := func() (steal, total uint64, ok bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "cpu" {
			return 0, 0, false
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			if i >= 8 { // guest time is already counted in user time
				break
			}
			total += n
			if i == 7 {
				steal = n
			}
		}
		return steal, total, true
	}
	s0, t0, ok0 := read()
	return func() (float64, bool) {
		s1, t1, ok1 := read()
		if !ok0 || !ok1 || t1 <= t0 {
			return 0, false
		}
		return 100 * float64(s1-s0) / float64(t1-t0), true
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// defaultEngine is the engine gateway.engine auto picks for a plain
// listener on this system.
func defaultEngine() string {
	if runtime.GOOS == "linux" {
		return gateway.EngineLoop
	}
	return gateway.EngineLean
}
