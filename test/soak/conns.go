package main

// The idle-connections scenario: what a client connection kept alive
// between requests costs the gateway in memory, on each engine. For each
// engine in -conns-engines (alternating, -conns-reps times), it starts
// `fluxgate gateway` with that engine in front of an upstream of this
// program's, opens -conns connections that each send one request and then
// stay open and silent, and reads the gateway's RSS (VmRSS) before and
// with them open; then it checks that a new request is still answered,
// closes them and reads RSS once more.
//
//	go run ./test/soak -conns 5000

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

var (
	connsN       = flag.Int("conns", 0, "run the idle-connections scenario with this many kept-alive connections instead of the new-key flood")
	connsEngines = flag.String("conns-engines", "lean,loop", "-conns: the gateway.engine values to compare")
	connsReps    = flag.Int("conns-reps", 2, "-conns: repetitions of each engine, alternating")
)

const connsConfig = `# written by test/soak -conns
server: {host: 127.0.0.1, http_port: %d, grpc_port: %d}
metrics: {enabled: false}
otlp: {grpc_port: %d, http_port: %d}
policies: {dir: %q}
log: {level: warn}
gateway:
  listen: 127.0.0.1:%d
  engine: %s
  max_connections: %d
  upstreams:
    - name: app
      targets: [{address: %s}]
  routes:
    - {id: app, match: {path_prefix: /}, upstream: app, control_point: ingress}
`

// runConns runs the scenario and returns the exit code.
func runConns(ctx context.Context, bin, dir string, n int) int {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()
	engines := strings.Split(*connsEngines, ",")
	perConn := map[string][]float64{}
	code := 0
	for rep := range *connsReps {
		for _, engine := range engines {
			r, err := idleConns(ctx, bin, filepath.Join(dir, fmt.Sprintf("conns-%s-%d", engine, rep)), strings.TrimPrefix(up.URL, "http://"), engine, n)
			if err != nil {
				log.Printf("%s: %v", engine, err)
				code = 1
				continue
			}
			log.Printf("%s: RSS %.1f MiB before, %.1f with %d idle connections (%.2f KiB each), %.1f after they closed; threads %d → %d",
				engine, mib(r.before), mib(r.open), n, r.perConn(n), mib(r.after), r.threadsBefore, r.threadsOpen)
			perConn[engine] = append(perConn[engine], r.perConn(n))
		}
	}
	fmt.Printf("\n%d kept-alive idle connections, %d repetitions alternating; the gateway's RSS growth a connection, median:\n\n", n, *connsReps)
	fmt.Println("| engine | KiB a connection | × " + engines[0] + " |")
	fmt.Println("|---|---|---|")
	med := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	for _, e := range engines {
		fmt.Printf("| %s | %.2f | %.2f |\n", e, med(perConn[e]), med(perConn[e])/med(perConn[engines[0]]))
	}
	return code
}

type connsResult struct {
	before, open, after        int64 // VmRSS, KiB
	threadsBefore, threadsOpen int64
}

// perConn is the RSS growth a connection, KiB.
func (r connsResult) perConn(n int) float64 { return float64(r.open-r.before) / float64(n) }

func mib(kib int64) float64 { return float64(kib) / 1024 }

// idleConns runs one gateway with engine and measures it.
func idleConns(ctx context.Context, bin, dir, upstream, engine string, n int) (connsResult, error) {
	var r connsResult
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		return r, err
	}
	hp, gp, og, oh, gw := freePort(), freePort(), freePort(), freePort(), freePort()
	conf := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, connsConfig, hp, gp, og, oh, pol, gw, engine, n+100, upstream), 0o600); err != nil {
		return r, err
	}
	cmd, err := startReady(ctx, fmt.Sprintf("127.0.0.1:%d", hp), bin, "gateway", "--config", conf)
	if err != nil {
		return r, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	}()
	status := func(field string) int64 {
		s := rssSampler{pid: cmd.Process.Pid}
		return s.field(field)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", gw)
	// One request first: the pools, the route and the control point are
	// warm before the baseline.
	if err := oneRequest(addr, nil); err != nil {
		return r, err
	}
	time.Sleep(time.Second)
	r.before, r.threadsBefore = status("VmRSS"), status("Threads")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return r, fmt.Errorf("connection %d: %w (raise ulimit -n?)", len(conns)+1, err)
		}
		conns = append(conns, c)
		if err := oneRequest(addr, c); err != nil {
			return r, fmt.Errorf("connection %d: %w", len(conns), err)
		}
	}
	time.Sleep(2 * time.Second)
	r.open, r.threadsOpen = status("VmRSS"), status("Threads")
	if err := oneRequest(addr, nil); err != nil {
		return r, fmt.Errorf("a new request with %d connections open: %w", n, err)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	conns = conns[:0]
	time.Sleep(2 * time.Second)
	r.after = status("VmRSS")
	return r, nil
}

// oneRequest sends GET / on c (a new connection when nil, closed after)
// and reads the answer, which must be 200.
func oneRequest(addr string, c net.Conn) error {
	if c == nil {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
		c = nc
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // past it the connection only waits to close
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: soak\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
