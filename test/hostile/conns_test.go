package hostile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/fluxmeter"
)

// connCap is server.max_connections in these tests (per listener), and
// connTimeout their read and idle timeouts: an idle or stalled client is
// cut after it.
const (
	connCap     = 64
	connTimeout = 2 * time.Second
)

// answerDeadline is how long a probe waits for an answer: generous, it is
// no latency bound. Under -long the flood of the HTTP API port queues a
// thousand connections ahead of a probe, each held for connTimeout by
// one of connCap slots: about 16 rounds of 2s.
func answerDeadline() time.Duration { return time.Duration(pick(45, 180)) * time.Second }

var connServer = fmt.Sprintf("max_connections: %d, read_timeout: %v, idle_timeout: %v, write_timeout: 10s", connCap, connTimeout, connTimeout)

// flood holds idle TCP connections to one address, each sending nothing.
// With redial, each connection the server closes is opened again at once:
// an attacker who keeps the cap full.
type flood struct {
	addr   string
	redial bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dialed atomic.Int64
	closed atomic.Int64 // connections the server closed
	failed atomic.Int64 // dials that failed
}

func startFlood(t *testing.T, addr string, n int, redial bool) *flood {
	ctx, cancel := context.WithCancel(t.Context())
	f := &flood{addr: addr, redial: redial, ctx: ctx, cancel: cancel}
	for range n {
		f.wg.Go(f.hold)
	}
	t.Cleanup(f.stop)
	return f
}

// hold keeps one connection open until the server closes it (and, with
// redial, dials again) or the flood stops.
func (f *flood) hold() {
	d := net.Dialer{Timeout: 5 * time.Second}
	for {
		c, err := d.DialContext(f.ctx, "tcp", f.addr)
		if err != nil {
			if f.ctx.Err() != nil {
				return
			}
			f.failed.Add(1)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		f.dialed.Add(1)
		done := make(chan struct{})
		go func() {
			select {
			case <-f.ctx.Done():
				_ = c.Close()
			case <-done:
			}
		}()
		_, _ = io.Copy(io.Discard, c) // returns when either side closes
		close(done)
		_ = c.Close()
		if f.ctx.Err() != nil {
			return
		}
		f.closed.Add(1)
		if !f.redial {
			return
		}
	}
}

func (f *flood) stop() {
	f.cancel()
	f.wg.Wait()
}

// waitClosed waits until the server has closed n of the flood's
// connections.
func (f *flood) waitClosed(n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for f.closed.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// probe is one request that must answer 200 within answerDeadline; it
// returns how long it took, for the record.
type probe struct {
	name string
	do   func(ctx context.Context) error
}

func (p *proc) probes(t *testing.T) []probe {
	hc := &http.Client{Timeout: answerDeadline(), Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			code, body, err := httpDo(ctx, hc, http.MethodGet, url, nil, nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", code, body)
			}
			return nil
		}
	}
	grpcCheck := p.checkClient(t)
	var own []probe
	if p.probe != "" {
		own = append(own, probe{"GET /readyz on the probe port", get("http://" + p.probe + "/readyz")})
	}
	return append(own,
		probe{"GET /v1/monitoring/health", get("http://" + p.api + "/v1/monitoring/health")},
		probe{"GET /metrics", get("http://" + p.mx + "/metrics")},
		probe{"POST /v1/check", func(ctx context.Context) error {
			code, body, err := httpDo(ctx, hc, http.MethodPost, "http://"+p.api+"/v1/check",
				strings.NewReader(`{"control_point":"ingress","labels":{"user":"probe"}}`), map[string]string{"Content-Type": "application/json"})
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", code, body)
			}
			return nil
		}},
		probe{"gRPC Check", func(ctx context.Context) error {
			_, err := grpcCheck.Check(ctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "probe"}})
			return err
		}},
	)
}

// runProbes runs every probe at once and fails the test for each that
// does not answer within answerDeadline.
func runProbes(t *testing.T, what string, probes []probe) {
	t.Helper()
	var wg sync.WaitGroup
	for _, pr := range probes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), answerDeadline())
			defer cancel()
			start := time.Now()
			if err := pr.do(ctx); err != nil {
				t.Errorf("%s: %s did not answer: %v", what, pr.name, err)
				return
			}
			t.Logf("%s: %s answered in %v", what, pr.name, time.Since(start).Round(time.Millisecond))
		})
	}
	wg.Wait()
}

// With the connection cap of the agent's listeners reached by idle
// connections, checks (HTTP and gRPC), health and metrics still answer:
// at once on the listeners the flood does not hold, as soon as the read
// timeout frees a slot on the one it holds, even when the attacker
// opens a new connection for each one the agent closes. The agent's
// descriptors stay within the caps and every idle connection is closed.
func TestConnectionCapKeepsAnswering(t *testing.T) {
	p := start(t, spec{server: connServer, probe: true, policies: map[string]string{"per-user.yaml": perUserPolicy}})
	probes := p.probes(t)
	runProbes(t, "unloaded", probes)
	fdsBefore := p.openFiles(t)
	n := connCap + pick(32, 1000)
	// Listeners: HTTP API, gRPC, metrics, OTLP gRPC, OTLP HTTP, probes.
	maxFDs := fdsBefore + 6*connCap

	// 1. The gRPC and OTLP ports full of idle connections.
	var floods []*flood
	for _, addr := range []string{p.grpc, p.otlpGRPC, p.otlpHTTP} {
		floods = append(floods, startFlood(t, addr, n, false))
	}
	time.Sleep(500 * time.Millisecond) // let the agent accept up to its caps
	fds := p.openFiles(t)
	t.Logf("%d idle connections to each of gRPC, OTLP gRPC and OTLP HTTP: the agent holds %d descriptors (%d before)", n, fds, fdsBefore)
	if fds > maxFDs {
		t.Errorf("the agent holds %d descriptors with the caps reached, want at most %d (%d before + 6 listeners × %d)", fds, maxFDs, fdsBefore, connCap)
	}
	// The gRPC probe shares the gRPC listener with the flood.
	runProbes(t, "gRPC and OTLP ports full", probes)
	for i, f := range floods {
		if !f.waitClosed(int64(n), answerDeadline()) {
			t.Errorf("flood %d (%s): the agent closed %d of %d idle connections within %v", i, f.addr, f.closed.Load(), n, answerDeadline())
		}
		f.stop()
	}

	// 2. The HTTP API and metrics ports full, and kept full: each
	// connection the agent closes is opened again.
	api := startFlood(t, p.api, n, true)
	mx := startFlood(t, p.mx, n, true)
	time.Sleep(500 * time.Millisecond)
	fds = p.openFiles(t)
	t.Logf("%d idle connections to each of the HTTP API and metrics, redialled when closed: the agent holds %d descriptors", n, fds)
	if fds > maxFDs {
		t.Errorf("the agent holds %d descriptors with the caps reached, want at most %d", fds, maxFDs)
	}
	runProbes(t, "HTTP API and metrics ports kept full", probes)
	t.Logf("HTTP API flood: %d connections dialled, %d closed by the agent; metrics flood: %d dialled, %d closed",
		api.dialed.Load(), api.closed.Load(), mx.dialed.Load(), mx.closed.Load())
	if api.closed.Load() == 0 || mx.closed.Load() == 0 {
		t.Errorf("the agent closed no idle connection of the floods (API %d, metrics %d)", api.closed.Load(), mx.closed.Load())
	}
	api.stop()
	mx.stop()
	p.alive(t)
}

// Many clients that send the headers of a 16 MiB OTLP body and then the
// body slowly (or almost all of it and then nothing) are cut by the read
// timeout, and the agent's RSS does not grow with their number times 16
// MiB. A body announced over 16 MiB gets 413 before it is sent.
func TestStalledOTLPBodies(t *testing.T) {
	p := start(t, spec{server: connServer})
	const bodyMiB = 16
	clients := pick(40, 200)
	before := p.rssMiB(t)
	peak := p.samplePeak(t)

	var wg sync.WaitGroup
	var cut atomic.Int64
	var mu sync.Mutex
	answers := map[int]int{}
	var sentMiB atomic.Int64
	chunk := make([]byte, 256<<10)
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", p.otlpHTTP, 5*time.Second)
			if err != nil {
				t.Errorf("dial OTLP: %v", err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(answerDeadline()))
			fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", bodyMiB<<20)
			// Half the clients send the body at 1 MiB/s (16 s for all of
			// it), half send all but its last chunk at once and stall.
			sent := 0
			for sent < bodyMiB<<20-len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					break
				}
				sent += len(chunk)
				if i%2 == 0 {
					time.Sleep(250 * time.Millisecond)
				}
			}
			sentMiB.Add(int64(sent >> 20))
			// Wait for the agent to answer (408/400) or close.
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("client %d: neither an answer nor a close within %v", i, answerDeadline())
					return
				}
				cut.Add(1)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("client %d: a body cut short answered 200", i)
			}
			mu.Lock()
			answers[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	p.alive(t)
	phasePeak := max(peak.end(), p.peakMiB(t)) // VmHWM: the kernel's peak, which sampling may miss
	t.Logf("%d clients sent %d MiB of %d MiB OTLP bodies in all: %d cut off without an answer, answers %v; RSS %.1f MiB before, peak %.1f MiB, now %.1f MiB",
		clients, sentMiB.Load(), bodyMiB, cut.Load(), answers, before, phasePeak, p.rssMiB(t))
	if grow, bound := phasePeak-before, float64(otlpRSSGrowMiB); grow > bound {
		t.Errorf("RSS grew by %.1f MiB under %d stalled OTLP bodies of %d MiB, want at most %.0f MiB", grow, clients, bodyMiB, bound)
	}

	// An OTLP body announced over 16 MiB: 413 before any of it is sent.
	c, err := net.DialTimeout("tcp", p.otlpHTTP, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerDeadline()))
	fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", bodyMiB<<20+1)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("an oversize OTLP body: no answer before the body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("an OTLP body of 16 MiB + 1 byte: status %d, want 413", resp.StatusCode)
	}
	// And a chunked one that turns out over 16 MiB.
	status := chunkedOTLP(t, p.otlpHTTP, bodyMiB<<20+1)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked OTLP body of 16 MiB + 1 byte: status %d, want 413", status)
	}
}

// otlpRSSGrowMiB is how much the agent's RSS may grow under the stalled
// OTLP bodies: the bodies in flight hold at most
// fluxmeter.MaxInFlightBytes; the buffers they outgrew as they doubled,
// and the bodies already answered, as much again until the next
// collection; the collector's headroom (GOGC=100 lets the heap reach
// twice the live heap of the last collection, whose bodies in flight
// were up to MaxInFlightBytes) once more; plus 64 MiB for the rest
// (connection buffers, the runtime). Measured 128–197 MiB of growth in
// CI runs. Without the budget, 40 such clients took 390 MiB, 200 take
// over 2 GiB.
const otlpRSSGrowMiB = 3*fluxmeter.MaxInFlightBytes>>20 + 64

// chunkedOTLP sends a chunked OTLP body of n bytes and returns the
// status, 0 when the agent closed the connection without one.
func chunkedOTLP(t *testing.T, addr string, n int) int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerDeadline()))
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := strings.Repeat("\x00", 64<<10)
	for sent := 0; sent < n; {
		k := min(len(chunk), n-sent)
		fmt.Fprintf(w, "%x\r\n%s\r\n", k, chunk[:k])
		sent += k
		if w.Flush() != nil {
			break
		}
	}
	fmt.Fprintf(w, "0\r\n\r\n")
	_ = w.Flush()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
