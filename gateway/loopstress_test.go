//go:build linux

package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Tests of the loop engine's second review (issue 20, item 5) that hold
// it to the lean engine under stress and adversarial events: counts,
// flow ends, timers and descriptors.

// eventTarget answers by path, each an event the engines must count
// alike: an answer, a reset before the head and one mid-body, 304 and
// HEAD with a Content-Length and no body, 1xx heads before the answer,
// an answer before the request's body was read, and a large answer.
// The reset mid-body comes once the client has the head and says so on
// rst (the gateway has relayed the head by then).
func eventTarget(t *testing.T) (addr string, rst chan struct{}) {
	rst = make(chan struct{}, 1)
	return scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var answer string
			switch req.URL.Path {
			case "/rsthead":
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			case "/rstbody":
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
				select {
				case <-rst:
				case <-time.After(5 * time.Second):
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				return
			case "/304":
				answer = "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n"
			case "/head":
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
			case "/1xx":
				answer = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			case "/early":
				// Answered before the body is read; the connection ends
				// (a FIN: the body is read to its end, not reset).
				_, _ = io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, br)
				return
			case "/big":
				// More than the kernel buffers between the gateway and a
				// client that reads through a small window (see
				// TestLoopEndsFlowsAsLean): the client's reset finds the
				// answer still being relayed.
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 16777216\r\n\r\n" + strings.Repeat("b", 16<<20)
			default:
				_, _ = io.Copy(io.Discard, req.Body)
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	}), rst
}

// requestSeries is the gateway's fluxgate_http_requests_total, a count
// by its labels.
func requestSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "fluxgate_http_requests_total" {
			continue
		}
		for _, x := range mf.GetMetric() {
			var k []string
			for _, lp := range x.GetLabel() {
				k = append(k, lp.GetName()+"="+lp.GetValue())
			}
			m[strings.Join(k, ",")] = x.GetCounter().GetValue()
		}
	}
	return m
}

// The loop engine counts each event as the lean engine does
// (fluxgate_http_requests_total by status, the in-flight gauge back to
// 0): a target's reset before the head and mid-body, 304 and HEAD with a
// Content-Length, 1xx heads, an answer before the body was sent, a
// client gone mid-answer, one that sends its head a byte at a time, no
// route, a body cut short and one stalled.
func TestLoopCountsEventsAsLean(t *testing.T) {
	up, rst := eventTarget(t)
	type event struct {
		name, req  string
		leave      bool // the client reads the head and leaves (a reset)
		trickle    bool // the request goes a byte at a time
		closeWrite bool // the client ends its side after the request
	}
	events := []event{
		{name: "ok", req: "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "reset before the head", req: "GET /rsthead HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "reset mid-body", req: "GET /rstbody HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "304", req: "GET /304 HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "HEAD", req: "HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "1xx", req: "GET /1xx HTTP/1.1\r\nHost: h\r\n\r\n"},
		{name: "answer before the body", req: "POST /early HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n" + strings.Repeat("x", 65536)},
		{name: "client gone mid-answer", req: "GET /big HTTP/1.1\r\nHost: h\r\n\r\n", leave: true},
		{name: "a byte at a time", req: "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n", trickle: true},
		{name: "no route", req: "GET /none HTTP/1.1\r\nHost: other\r\n\r\n"},
		{name: "body cut short", req: "POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort", closeWrite: true},
		{name: "body stalled", req: "POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort"},
	}
	counts := map[string]map[string]float64{}
	for _, engine := range []string{"lean", "loop"} {
		reg := prometheus.NewPedanticRegistry()
		cfg := oneUpstream(up)
		cfg.Routes[0].Match = RouteMatch{Host: "h"}
		g, err := New(Options{Config: cfg, Registerer: reg, ResponseHeaderTimeout: 5 * time.Second, BodyReadTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		addr := serveEngine(t, g, engine)
		for _, ev := range events {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if ev.trickle {
				for i := range len(ev.req) {
					if _, err := io.WriteString(c, ev.req[i:i+1]); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Millisecond)
				}
			} else if _, err := io.WriteString(c, ev.req); err != nil {
				t.Fatal(err)
			}
			if ev.closeWrite {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: strings.Fields(ev.req)[0]})
			if strings.Contains(ev.req, "/rstbody") {
				rst <- struct{}{}
			}
			if err == nil {
				if ev.leave {
					_ = c.(*net.TCPConn).SetLinger(0)
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
				}
				_ = resp.Body.Close()
			}
			_ = c.Close()
			// One event at a time: this one counted before the next.
			time.Sleep(50 * time.Millisecond)
		}
		if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
			t.Errorf("%s: requests left in flight", engine)
		}
		counts[engine] = requestSeries(t, reg)
	}
	if !reflect.DeepEqual(counts["lean"], counts["loop"]) {
		t.Errorf("fluxgate_http_requests_total:\nlean: %v\nloop: %v", counts["lean"], counts["loop"])
	}
	t.Logf("lean: %v", counts["lean"])
}

// 1,200 clients at once, opening and closing every way (answered,
// connected and gone, gone mid-head, reset before reading the answer,
// reset mid-body, pipelined): once all are gone the loops hold no timer
// but their pools' pruning ones (each connection's two are stopped), and
// after Shutdown the process holds the descriptors it held before.
func TestLoopManyConnectionsAtOnce(t *testing.T) {
	up, _, _ := openTarget(t, nil)
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, addr, served := startLoop(t, g, 2)
	before := openFDs(t) // the listener's, the loops' (closed at Shutdown)
	const n = 1200
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range n {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			reset := func() { _ = c.(*net.TCPConn).SetLinger(0) }
			switch i % 6 {
			case 0, 5:
				req := "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
				if i%6 == 5 {
					req += "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
				}
				if _, err := io.WriteString(c, req); err != nil {
					t.Error(err)
					return
				}
				br := bufio.NewReader(c)
				for range strings.Count(req, "GET") {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					if resp.StatusCode == 200 {
						answered.Add(1)
					}
				}
			case 1:
			case 2:
				_, _ = io.WriteString(c, "GET /a HTTP/1.1\r\nHo")
			case 3:
				_, _ = io.WriteString(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
				reset()
			case 4:
				_, _ = io.WriteString(c, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
				reset()
			}
		})
	}
	wg.Wait()
	if want := int64(n / 6 * 3); answered.Load() != want {
		t.Errorf("%d answers, want %d", answered.Load(), want)
	}
	waitUntil(t, "the loops' connections to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conns == 0
	})
	s.onLoops(func(st *loopState) {
		pruning := 0
		for _, p := range st.pools {
			if p.pruning.Set() {
				pruning++
			}
		}
		if timers := st.l.Timers(); timers != pruning {
			t.Errorf("loop %d: %d timers set with no connection, want its pools' %d", st.l.Index(), timers, pruning)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	g.Close()
	if extra := fdsBack(t, before); len(extra) > 0 {
		t.Errorf("%d descriptors open after Shutdown, not before: %v", len(extra), extra[:min(len(extra), 20)])
	}
}

// A client that sends its head a byte at a time (slowloris), first on a
// new connection and after a first request on a kept-alive one, is cut
// off by the head timeout, which runs from the head's first byte and is
// not pushed back by each byte: the connection closes, unanswered, long
// before the head (4 KB, a byte every 5 ms) could be whole. As lean does.
func TestLoopHeadTimeoutCutsATrickle(t *testing.T) {
	up, _, _ := openTarget(t, nil)
	for _, engine := range []string{"lean", "loop"} {
		for _, first := range []bool{false, true} {
			g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Close)
			const headTimeout = 300 * time.Millisecond
			var addr string
			if engine == "lean" {
				url, _ := serveLeanWith(t, g, func(s *LeanServer) { s.headTimeout = headTimeout })
				addr = strings.TrimPrefix(url, "http://")
			} else {
				addr, _ = serveLoopWith(t, g, func(s *LoopServer) { s.lean.headTimeout = headTimeout })
			}
			c, br := dialLean(t, addr)
			if first {
				if resp, body := exchangeOn(t, c, br, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "/first" {
					t.Fatalf("%s: first request: %d %q", engine, resp.StatusCode, body)
				}
			}
			head := "GET /slow HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", 4096) + "\r\n\r\n"
			cut := make(chan error, 1)
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
				_, err := br.ReadByte()
				cut <- err
			}()
			sent := 0
		trickle:
			for ; sent < len(head); sent++ {
				select {
				case err := <-cut:
					if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("%s (after a request %v): read %v, want the connection closed", engine, first, err)
					}
					break trickle
				default:
				}
				if _, err := io.WriteString(c, head[sent:sent+1]); err != nil {
					break // reset: closed
				}
				time.Sleep(5 * time.Millisecond)
			}
			if sent == len(head) {
				t.Errorf("%s (after a request %v): the whole head went in a byte at a time", engine, first)
			}
			t.Logf("%s (after a request %v): closed after %d bytes", engine, first, sent)
			_ = c.Close()
		}
	}
}

// Reloads that move the route between targets while clients send, then
// Shutdown with requests in flight (run it with -race): every request is
// answered by a target of the group it was routed with or fails
// cleanly once Shutdown began, nothing stays in flight, and every
// descriptor is closed.
func TestLoopReloadsAndShutdownUnderLoad(t *testing.T) {
	a, _, _ := openTarget(t, nil)
	b, _, _ := openTarget(t, nil)
	reg := prometheus.NewPedanticRegistry()
	cfgOf := func(addrs ...string) Config {
		var ts []TargetConfig
		for _, x := range addrs {
			ts = append(ts, TargetConfig{Address: x})
		}
		return Config{Upstreams: []UpstreamConfig{{Name: "u", Targets: ts}}, Routes: []RouteConfig{{ID: "r", Upstream: "u"}}}
	}
	g, err := New(Options{Config: cfgOf(a), Registerer: reg, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, addr, served := startLoop(t, g, 2)
	before := openFDs(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered, bad atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return // Shutdown closed the listener's queue
				}
				// A connection dialled as Shutdown began waits in the
				// listener's queue, never accepted: the deadline ends it.
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				br := bufio.NewReader(c)
				for j := range 20 {
					path := fmt.Sprintf("/c%d/%d", i, j)
					if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
						break
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						break
					}
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						break
					}
					if resp.StatusCode != 200 || string(body) != path {
						bad.Add(1)
						t.Errorf("%s: %d %q", path, resp.StatusCode, body)
					}
					answered.Add(1)
				}
				_ = c.Close()
			}
		})
	}
	sets := [][]string{{b}, {a, b}, {a}}
	for i := range 60 {
		if err := g.Update(cfgOf(sets[i%3]...)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop) // each client ends with the connection it has open
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wg.Wait()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if answered.Load() == 0 {
		t.Fatal("no request answered")
	}
	if v := metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue(); v != 0 {
		t.Errorf("in flight after Shutdown: %v", v)
	}
	g.Close()
	if extra := fdsBack(t, before); len(extra) > 0 {
		t.Errorf("descriptors open after Shutdown, not before: %v", extra)
	}
	t.Logf("%d requests answered across 60 reloads", answered.Load())
}

// A client that resets while its check waits: the check admits after,
// the request goes on and its answer finds the client gone. The loop
// engine counts it as lean does, ends its flow and closes the
// connection.
func TestLoopClientGoneWhileTheCheckWaits(t *testing.T) {
	up, _, _ := openTarget(t, nil)
	counts := map[string]map[string]float64{}
	for _, engine := range []string{"lean", "loop"} {
		hc := &heldChecker{hold: make(chan struct{})}
		reg := prometheus.NewPedanticRegistry()
		g, err := New(Options{Config: oneUpstream(up), Checker: hc, Registerer: reg, ResponseHeaderTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		addr := serveEngine(t, g, engine)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, engine+": the check", func() bool { return hc.checked.Load() == 1 })
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
		time.Sleep(50 * time.Millisecond) // the reset arrives before the decision
		close(hc.hold)
		waitUntil(t, engine+": the flow's end", func() bool { return hc.ended.Load() == 1 })
		if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
			t.Errorf("%s: request left in flight", engine)
		}
		counts[engine] = requestSeries(t, reg)
	}
	if !reflect.DeepEqual(counts["lean"], counts["loop"]) {
		t.Errorf("fluxgate_http_requests_total:\nlean: %v\nloop: %v", counts["lean"], counts["loop"])
	}
	t.Logf("lean: %v", counts["lean"])
}

// The flows a check admitted (off the loop) end as on lean, each once,
// failed or not alike: an answer, a target's reset before the head and
// mid-body, a 304, a client gone mid-answer.
func TestLoopEndsFlowsAsLean(t *testing.T) {
	up, rst := eventTarget(t)
	reqs := []struct {
		req   string
		leave bool
	}{
		{req: "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"},
		{req: "GET /rsthead HTTP/1.1\r\nHost: h\r\n\r\n"},
		{req: "GET /rstbody HTTP/1.1\r\nHost: h\r\n\r\n"},
		{req: "GET /304 HTTP/1.1\r\nHost: h\r\n\r\n"},
		{req: "GET /big HTTP/1.1\r\nHost: h\r\n\r\n", leave: true},
	}
	type ends struct{ ended, failed int64 }
	got := map[string][]ends{}
	for _, engine := range []string{"lean", "loop"} {
		hc := &heldChecker{hold: make(chan struct{})}
		close(hc.hold)
		g, err := New(Options{Config: oneUpstream(up), Checker: hc, ResponseHeaderTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		addr := serveEngine(t, g, engine)
		// A 16 KiB receive buffer, set before the handshake so that the
		// window stays small: with autotuning (up to tcp_rmem's 32 MiB
		// here) a client that "leaves mid-answer" could have the whole
		// answer in its kernel first, and the engines would count a
		// complete answer (a test that failed 3 runs in 30).
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
			}); err != nil {
				return err
			}
			return serr
		}}
		for i, r := range reqs {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, r.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if strings.Contains(r.req, "/rstbody") {
				rst <- struct{}{}
			}
			if err == nil {
				if r.leave {
					_ = c.(*net.TCPConn).SetLinger(0)
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
				}
			}
			_ = c.Close()
			waitUntil(t, engine+": the flow's end", func() bool { return hc.ended.Load() == int64(i+1) })
			got[engine] = append(got[engine], ends{hc.ended.Load(), hc.failed.Load()})
		}
	}
	if !reflect.DeepEqual(got["lean"], got["loop"]) {
		t.Errorf("flow ends (total, failed) after each request:\nlean: %v\nloop: %v", got["lean"], got["loop"])
	}
	t.Logf("lean: %v", got["lean"])
}
