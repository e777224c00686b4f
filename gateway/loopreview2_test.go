//go:build linux

package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Tests of the loop engine's second review (issue 20, item 5): its loose
// ends and what an adversarial look at it found.

// openTarget answers each request with its path and counts the
// connections to it that are open: accepted and not yet ended by the
// gateway. A request for a path ending in /slow is answered once release closes (slow
// counts those that came).
func openTarget(t *testing.T, release <-chan struct{}) (addr string, open, slow *atomic.Int64) {
	open, slow = new(atomic.Int64), new(atomic.Int64)
	addr = scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		open.Add(1)
		defer open.Add(-1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if strings.HasSuffix(req.URL.Path, "/slow") {
				slow.Add(1)
				<-release
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(req.URL.Path))+"\r\n\r\n"+req.URL.Path); err != nil {
				return
			}
		}
	})
	return addr, open, slow
}

// A reload that removes a target closes the idle connections to it on
// every loop at once, as the lean engine's pools are closed on Update,
// and the one in use once its answer is relayed; connections to a target
// that stays stay.
func TestLoopReloadClosesIdleConnectionsToRemovedTargets(t *testing.T) {
	release := make(chan struct{})
	a, openA, slowA := openTarget(t, release)
	b, openB, _ := openTarget(t, nil)
	cfg := Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: a}}}, {Name: "v", Targets: []TargetConfig{{Address: b}}}},
		Routes: []RouteConfig{{ID: "r", Upstream: "u", Match: RouteMatch{PathPrefix: "/a"}},
			{ID: "s", Upstream: "v", Match: RouteMatch{PathPrefix: "/b"}}},
	}
	g, err := New(Options{Config: cfg, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr := serveLoopAddr(t, g)
	// Four clients, so that both loops hold connections to each target.
	for range 4 {
		c, br := dialLean(t, addr)
		for _, p := range []string{"/a", "/b"} {
			if resp, body := exchangeOn(t, c, br, "GET "+p+" HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != p {
				t.Fatalf("%s: %d %q", p, resp.StatusCode, body)
			}
		}
		_ = c.Close()
	}
	if openA.Load() == 0 || openB.Load() == 0 {
		t.Fatalf("open connections before the reload: a %d, b %d", openA.Load(), openB.Load())
	}
	nb := openB.Load()
	slow, slowBR := dialLean(t, addr)
	if _, err := io.WriteString(slow, "GET /a/slow HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the slow request at the target", func() bool { return slowA.Load() == 1 })
	cfg.Upstreams[0].Targets = []TargetConfig{{Address: b}}
	if err := g.Update(cfg); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the idle connections to the removed target to close", func() bool { return openA.Load() == 1 })
	close(release)
	if resp, body := exchangeOn(t, slow, slowBR, ""); resp.StatusCode != 200 || body != "/a/slow" {
		t.Fatalf("the request in flight across the reload: %d %q", resp.StatusCode, body)
	}
	waitUntil(t, "the connection in use at the reload to close", func() bool { return openA.Load() == 0 })
	if n := openB.Load(); n != nb {
		t.Errorf("connections to the target that stayed: %d, were %d", n, nb)
	}
	// The target that stayed serves on; the removed one is not asked.
	c, br := dialLean(t, addr)
	if resp, body := exchangeOn(t, c, br, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "/a" {
		t.Fatalf("after the reload: %d %q", resp.StatusCode, body)
	}
	if n := openA.Load(); n != 0 {
		t.Errorf("%d connections to the removed target after a request", n)
	}
}

// heldChecker decides off the loop only (TryCheck never decides), each
// check held until hold closes, and admits with a flow that holds a slot
// (FlowID): its end is counted.
type heldChecker struct {
	hold           chan struct{}
	reject         bool // reject instead
	checked, ended atomic.Int64
	decided        atomic.Int64
	failed         atomic.Int64 // ends reported failed
}

func (h *heldChecker) Check(_ context.Context, req *flow.Request, d *flow.Decision) error {
	h.checked.Add(1)
	defer h.decided.Add(1)
	<-h.hold
	d.Reset(req.ControlPoint)
	if h.reject {
		d.Accepted, d.Decider, d.StatusCode = false, 0, http.StatusTooManyRequests
		return nil
	}
	d.FlowID = 7
	return nil
}

func (h *heldChecker) TryCheck(context.Context, *flow.Request, *flow.Decision) (bool, error) {
	return false, nil
}

func (h *heldChecker) EndFlowAt(_ time.Time, _ uint64, failed bool) {
	if failed {
		h.failed.Add(1)
	}
	h.ended.Add(1)
}

// A check that waits and admits after Shutdown cut its connection and
// stopped the loops: the decision's flow is ended (its slot given back)
// though the loop will not run the request on; and the in-flight gauge is
// back to 0.
func TestLoopCheckDecidedAfterTheLoopsStoppedEndsItsFlow(t *testing.T) {
	hc := &heldChecker{hold: make(chan struct{})}
	up, _, _ := openTarget(t, nil)
	g, err := New(Options{Config: oneUpstream(up), Checker: hc, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	s, addr, served := startLoop(t, g, 2)
	c, _ := dialLean(t, addr)
	if _, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the check off the loop", func() bool { return hc.checked.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a request held: %v, want the deadline", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	close(hc.hold) // the check admits now, the loops stopped
	waitUntil(t, "the admitted flow's end", func() bool { return hc.ended.Load() == 1 })
	if v := testutil.ToFloat64(g.metrics.inFlight.WithLabelValues("r", http.MethodGet)); v != 0 {
		t.Errorf("requests in flight after Shutdown: %v", v)
	}
}

// countHandler counts the records logged, and keeps the last's
// "failures" attribute.
type countHandler struct {
	n        atomic.Int64
	failures atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.n.Add(1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "failures" {
			h.failures.Store(a.Value.Int64())
		}
		return true
	})
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// Failed accepts (out of descriptors: every loop pauses after each, 10 a
// second a loop) are logged once a second at most, with the count since
// the last line, not once a pause.
func TestLoopLogsFailedAcceptsOnceASecond(t *testing.T) {
	h := &countHandler{}
	g, err := New(Options{Config: oneUpstream("127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	s, err := g.NewLoopServer(slog.New(h), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	emfile := os.NewSyscallError("accept4", syscall.EMFILE)
	for i := range 20 { // two loops, a second: t0 … t0+950ms
		s.acceptFailed(t0.Add(time.Duration(i/2)*100*time.Millisecond), emfile)
	}
	if n := h.n.Load(); n != 1 {
		t.Fatalf("%d lines for 20 failures within a second, want 1", n)
	}
	s.acceptFailed(t0.Add(time.Second), emfile)
	if n, f := h.n.Load(), h.failures.Load(); n != 2 || f != 20 {
		t.Fatalf("a second later: %d lines, the last with %d failures; want 2 lines, 20 (19 held back and this one)", n, f)
	}
}

// A check that rejects off the loop while Shutdown, out of time, cuts its
// connection on the loop (run with -race): the rejection is written into
// the connection's state on the check's goroutine, and the cut must not
// read that state meanwhile; the request is counted cut, unanswered
// (status 0), once.
func TestLoopCutWhileACheckRejectsOffTheLoop(t *testing.T) {
	hc := &heldChecker{hold: make(chan struct{}), reject: true}
	up, _, _ := openTarget(t, nil)
	reg := prometheus.NewPedanticRegistry()
	g, err := New(Options{Config: oneUpstream(up), Checker: hc, Registerer: reg, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	s, addr, served := startLoop(t, g, 1)
	c, _ := dialLean(t, addr)
	if _, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the check off the loop", func() bool { return hc.checked.Load() == 1 })
	// The check decides about when Shutdown cuts the connection, with
	// nothing ordering the two (the goroutine that lets it decide knows
	// nothing of the loop).
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(hc.hold)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = s.Shutdown(ctx)
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	waitUntil(t, "the check's decision", func() bool { return hc.decided.Load() == 1 })
	got := requestSeries(t, reg)
	var total float64
	for _, v := range got {
		total += v
	}
	if total != 1 {
		t.Errorf("requests counted: %v, want the one", got)
	}
	if v := testutil.ToFloat64(g.metrics.inFlight.WithLabelValues("r", http.MethodGet)); v != 0 {
		t.Errorf("requests in flight after Shutdown: %v", v)
	}
}

// A dial to a target named by host name (on a goroutine) that ends after
// Shutdown cut its request and stopped the loops: the socket it made is
// closed, not dropped with a function the loop will not run.
func TestLoopDialEndingAfterShutdownClosesItsSocket(t *testing.T) {
	up, _, _ := openTarget(t, nil)
	_, port, _ := net.SplitHostPort(up)
	g, err := New(Options{Config: oneUpstream(net.JoinHostPort("localhost", port)), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	hold := make(chan struct{})
	var dialling atomic.Int64
	g.dialer.Control = func(string, string, syscall.RawConn) error {
		dialling.Add(1)
		<-hold
		return nil
	}
	s, addr, served := startLoop(t, g, 2)
	before := openFDs(t)
	c, _ := dialLean(t, addr)
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the dial", func() bool { return dialling.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a dial held: %v, want the deadline", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	_ = c.Close()
	close(hold)
	if extra := fdsBack(t, before); len(extra) > 0 {
		t.Errorf("descriptors open after the dial ended, not before: %v", extra)
	}
}
