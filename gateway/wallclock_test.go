//go:build linux

package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// slowTarget answers each request after delay.
func slowTarget(t *testing.T, delay time.Duration) string {
	return scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			time.Sleep(delay)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
}

// The goroutine engines (the net/http handler, behind net/http's HTTP/1
// and the lean engine's HTTP/2, and the lean engine itself) read the
// clock once when a request starts and once when its answer ends (issue
// 20, item 5), with fresh readings after the waits between: the check
// is at the request's reading (TryCheckAt, never the checker's own
// clock), the first attempt starts then too, the flow ends at the end's
// reading (EndFlowAt), and the flow's record and the request's duration
// are that end less that start, to the nanosecond. Against a target that
// takes 50 ms, every duration is at least that and every time lies
// between the client's readings around the request: no reading taken
// before a wait stands for one after it.
func TestGoroutineEnginesShareTheirClockReadings(t *testing.T) {
	const delay = 50 * time.Millisecond
	for _, engine := range []string{"net", "h2", "lean"} {
		t.Run(engine, func(t *testing.T) {
			e := allocEngine(t, allocFullPolicy)
			ck := &countingChecker{LocalChecker: controlpoint.NewLocalChecker(e)}
			g, seen, reg := slowGateway(t, ck, delay)
			var get func(i int) *http.Response
			switch engine {
			case "net":
				srv := httptest.NewServer(g)
				t.Cleanup(srv.Close)
				get = func(i int) *http.Response { return clientGet(t, srv.Client(), fmt.Sprintf("%s/r%d", srv.URL, i)) }
			case "h2":
				addr, _, ccfg := serveLeanTLS(t, g, nil, nil)
				tr := &http.Transport{TLSClientConfig: ccfg, ForceAttemptHTTP2: true}
				t.Cleanup(tr.CloseIdleConnections)
				c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				get = func(i int) *http.Response {
					resp := clientGet(t, c, fmt.Sprintf("https://%s/r%d", addr, i))
					if resp.ProtoMajor != 2 {
						t.Fatalf("answered over %s; want HTTP/2", resp.Proto)
					}
					return resp
				}
			case "lean":
				url, _ := serveLean(t, g)
				c, br := dialLean(t, url[len("http://"):])
				get = func(i int) *http.Response { return aliceGet(t, c, br, i) }
			}
			tg := g.state.Load().upstreams["u"].targets[0]
			const n = 4
			var before, after [n]time.Time
			var samples [n]sample
			for i := range n {
				before[i] = time.Now()
				resp := get(i)
				if resp.StatusCode != http.StatusOK || resp.Header.Get(flow.HeaderDecision) != "accepted" {
					t.Fatalf("request %d: %d %v; want 200 accepted", i, resp.StatusCode, resp.Header)
				}
				waitUntil(t, "the flow's end", func() bool {
					ck.mu.Lock()
					defer ck.mu.Unlock()
					return len(ck.flowEndsAt) == i+1
				})
				after[i] = time.Now()
				tg.mu.Lock()
				if len(tg.samples) != i+1 {
					tg.mu.Unlock()
					t.Fatalf("request %d: the target has %d latency samples; want %d", i, len(tg.samples), i+1)
				}
				samples[i] = tg.samples[i]
				tg.mu.Unlock()
			}
			checks, ends, recorded := clockReadings(t, ck, seen, n, "by Check (each should be at the request's reading)")
			var sum float64
			for i := range n {
				if checks[i].Before(before[i]) || after[i].Before(ends[i]) {
					t.Errorf("request %d: checked at %v and ended at %v, not between the client's %v and %v", i, checks[i], ends[i], before[i], after[i])
				}
				d := ends[i].Sub(checks[i])
				if d < delay {
					t.Errorf("request %d: %v from its check to its end; want at least the target's %v", i, d, delay)
				}
				if want := float64(d) / 1e6; recorded[i] != want {
					t.Errorf("request %d: flow recorded with a workload of %v ms; want %v, its end less its check", i, recorded[i], want)
				}
				sum += d.Seconds()
				// The attempt started at the request's reading and ended
				// at a fresh one, once the target answered.
				s := samples[i]
				if started := s.at.Add(-s.latency); !started.Equal(checks[i]) {
					t.Errorf("request %d: the attempt started at %v; want the request's reading %v", i, started, checks[i])
				}
				if s.latency < delay || ends[i].Before(s.at) {
					t.Errorf("request %d: the target's latency %v ending at %v; want at least %v, ending by the flow's end %v", i, s.latency, s.at, delay, ends[i])
				}
			}
			h := metricOf(t, reg, "fluxgate_http_request_duration_seconds").GetHistogram()
			if h.GetSampleCount() != n || h.GetSampleSum() != sum {
				t.Errorf("request durations: %d summing to %vs; want %d summing to %vs, the flows' ends less their checks", h.GetSampleCount(), h.GetSampleSum(), n, sum)
			}
		})
	}
}

// clientGet GETs url with c, as user alice, and reads the whole answer.
func clientGet(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-User", "alice")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// waitingChecker checks as its LocalChecker after waiting, as a remote
// agent or a scheduler's queue can: only Check (it cannot try), so its
// checks may wait. It keeps when each check returned.
type waitingChecker struct {
	l    *controlpoint.LocalChecker
	wait time.Duration

	mu       sync.Mutex
	returned []time.Time // guarded by mu
}

func (c *waitingChecker) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	time.Sleep(c.wait)
	err := c.l.Check(ctx, req, d)
	c.mu.Lock()
	c.returned = append(c.returned, time.Now())
	c.mu.Unlock()
	return err
}

func (c *waitingChecker) EndFlow(ctx context.Context, id uint64, failed bool) error {
	return c.l.EndFlow(ctx, id, failed)
}

// A check that waits is a wait: the readings after it are fresh. The
// request's duration runs from before the check (at least the check's
// wait and the target's), the flow's workload and the first attempt
// start once the check returned, on every goroutine engine.
func TestGoroutineEnginesReadTheClockAfterAWaitingCheck(t *testing.T) {
	const wait, delay = 30 * time.Millisecond, 20 * time.Millisecond
	for _, engine := range []string{"net", "lean"} {
		t.Run(engine, func(t *testing.T) {
			ck := &waitingChecker{l: controlpoint.NewLocalChecker(allocEngine(t, allocFullPolicy)), wait: wait}
			g, seen, reg := slowGateway(t, ck, delay)
			var url string
			if engine == "net" {
				srv := httptest.NewServer(g)
				t.Cleanup(srv.Close)
				url = srv.URL
			} else {
				url, _ = serveLean(t, g)
			}
			before := time.Now()
			resp := clientGet(t, http.DefaultClient, url+"/")
			after := time.Now()
			if resp.StatusCode != http.StatusOK || resp.Header.Get(flow.HeaderDecision) != "accepted" {
				t.Fatalf("%d %v; want 200 accepted", resp.StatusCode, resp.Header)
			}
			waitUntil(t, "the flow's record", func() bool {
				seen.mu.Lock()
				defer seen.mu.Unlock()
				return len(seen.ms) == 1
			})
			ck.mu.Lock()
			returned := ck.returned
			ck.mu.Unlock()
			if len(returned) != 1 {
				t.Fatalf("%d checks; want 1", len(returned))
			}
			tg := g.state.Load().upstreams["u"].targets[0]
			tg.mu.Lock()
			s := tg.samples[0]
			tg.mu.Unlock()
			if started := s.at.Add(-s.latency); started.Before(returned[0]) {
				t.Errorf("the attempt started at %v, before the check returned at %v", started, returned[0])
			}
			if s.latency < delay {
				t.Errorf("the target's latency %v; want at least %v", s.latency, delay)
			}
			seen.mu.Lock()
			workload := time.Duration(seen.ms[0] * 1e6)
			seen.mu.Unlock()
			if workload < delay || workload > after.Sub(returned[0]) {
				t.Errorf("the flow's workload %v; want from the check's return (%v before the client's end) and at least the target's %v", workload, after.Sub(returned[0]), delay)
			}
			h := metricOf(t, reg, "fluxgate_http_request_duration_seconds").GetHistogram()
			d := time.Duration(h.GetSampleSum() * 1e9)
			if h.GetSampleCount() != 1 || d < wait+delay || d > after.Sub(before) {
				t.Errorf("request durations: %d summing to %v; want 1 of at least %v (the check's wait and the target's) and at most the client's %v", h.GetSampleCount(), d, wait+delay, after.Sub(before))
			}
		})
	}
}

// slowGateway is a gateway with ck at the control point "ingress" of its
// one route, to a target that answers after delay, recording the flows'
// workloads and its metrics.
func slowGateway(t *testing.T, ck client.Checker, delay time.Duration) (*Gateway, *workloads, *prometheus.Registry) {
	t.Helper()
	seen := &workloads{}
	reg := prometheus.NewRegistry()
	cfg := oneUpstream(slowTarget(t, delay))
	cfg.Routes[0].ControlPoint = "ingress"
	g, err := New(Options{Config: cfg, Checker: ck, Flows: seen, Registerer: reg, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, seen, reg
}
