package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/gateway"
)

// backend is a test upstream that answers with its name and counts what
// it served. Delay, Status and Hang change its behaviour at run time.
type backend struct {
	name   string
	srv    *httptest.Server
	served atomic.Int64
	delay  atomic.Int64 // nanoseconds added to every request
	status atomic.Int64 // 0 means 200
	hang   atomic.Bool  // block until the request's context ends
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		b.served.Add(1)
		if b.hang.Load() {
			<-r.Context().Done()
			return
		}
		if d := b.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		w.Header().Set("X-Backend", name)
		if s := b.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// kill closes the backend's listener and connections: later connects are
// refused.
func (b *backend) kill() {
	b.srv.CloseClientConnections()
	b.srv.Listener.Close()
	b.srv.CloseClientConnections()
}

// harness is a gateway served on a loopback port, with its health loop
// running.
type harness struct {
	gw  *gateway.Gateway
	url string
	reg *prometheus.Registry
	hc  *http.Client
}

// engines are the gateway's server engines: net/http (TLS and h2c
// listeners) and the fast HTTP/1.1 engine (plain listeners). The tests
// that call start run on each.
var engines = []string{"net", "fast", "lean"}

func eachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { test(t, e) })
	}
}

// start serves a Gateway for cfg on engine ("net" or "fast") and runs its
// health checks until the test ends.
func start(t *testing.T, engine string, cfg gateway.Config, checker client.Checker) *harness {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	g, err := gateway.New(gateway.Options{Config: cfg, Checker: checker, Registerer: reg, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	url, stop := serve(t, engine, g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		stop()
		g.Close()
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &harness{gw: g, url: url, reg: reg, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// serve serves g on engine on a loopback port.
func serve(t *testing.T, engine string, g *gateway.Gateway) (url string, stop func()) {
	t.Helper()
	if engine == "net" {
		srv := httptest.NewServer(g)
		return srv.URL, srv.Close
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if engine == "lean" {
		ls := g.NewLeanServer(nil)
		done := make(chan struct{})
		go func() { _ = ls.Serve(ln); close(done) }()
		return "http://" + ln.Addr().String(), func() {
			_ = ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ls.Shutdown(ctx)
			<-done
		}
	}
	fs := g.NewFastServer(nil)
	done := make(chan struct{})
	go func() { _ = fs.Serve(gateway.FastListener(ln)); close(done) }()
	return "http://" + ln.Addr().String(), func() { _ = fs.Shutdown(); <-done }
}

// get sends one request and returns the status and the X-Backend header.
func (h *harness) get(t *testing.T, path string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", path, err)
		return 0, ""
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Backend")
}

// load sends n GETs from c workers and counts answers by backend ("" for
// errors) and by status.
func (h *harness) load(t *testing.T, n, c int, path string) (byBackend map[string]int, byStatus map[int]int) {
	t.Helper()
	byBackend, byStatus = map[string]int{}, map[int]int{}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				st, be := h.get(t, path, nil)
				mu.Lock()
				byBackend[be]++
				byStatus[st]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return byBackend, byStatus
}

func (h *harness) target(t *testing.T, upstream, addr string) gateway.TargetStatus {
	t.Helper()
	for _, u := range h.gw.Status(time.Now()) {
		if u.Name != upstream {
			continue
		}
		for _, ts := range u.Targets {
			if ts.Address == addr {
				return ts
			}
		}
	}
	t.Fatalf("no target %s in upstream %s", addr, upstream)
	return gateway.TargetStatus{}
}

func (h *harness) breaker(upstream string) string {
	for _, u := range h.gw.Status(time.Now()) {
		if u.Name == upstream {
			return u.Breaker
		}
	}
	return ""
}

// waitFor polls cond every 5ms until it holds or d passes, returning how
// long it took and whether it held.
func waitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start), cond()
}

func targets(bs ...*backend) []gateway.TargetConfig {
	var out []gateway.TargetConfig
	for _, b := range bs {
		out = append(out, gateway.TargetConfig{Address: b.addr()})
	}
	return out
}

func oneRoute(u gateway.UpstreamConfig) gateway.Config {
	return gateway.Config{
		Listen:    "127.0.0.1:0",
		Upstreams: []gateway.UpstreamConfig{u},
		Routes:    []gateway.RouteConfig{{ID: "r", Match: gateway.RouteMatch{PathPrefix: "/"}, Upstream: u.Name}},
	}
}
