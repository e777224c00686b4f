//go:build linux

package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// countingChecker is the in-process engine's checker, counting how the
// loop asked it: TryCheckAt on the loop at the wake's clock reading, or
// TryCheck at the checker's own (decided or not), and Check, which the
// loop calls only on a goroutine of its own. It keeps the times of the
// checks and flow ends it was given.
type countingChecker struct {
	*controlpoint.LocalChecker
	tried, undecided, checked atomic.Int64
	ownClock                  atomic.Int64 // TryCheck calls

	mu         sync.Mutex
	checksAt   []time.Time // guarded by mu: TryCheckAt's now
	flowEndsAt []time.Time // guarded by mu: EndFlowAt's now
}

func (c *countingChecker) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	c.checked.Add(1)
	return c.LocalChecker.Check(ctx, req, d)
}

func (c *countingChecker) TryCheck(ctx context.Context, req *flow.Request, d *flow.Decision) (bool, error) {
	c.ownClock.Add(1)
	return c.counted(c.LocalChecker.TryCheck(ctx, req, d))
}

func (c *countingChecker) TryCheckAt(ctx context.Context, now time.Time, req *flow.Request, d *flow.Decision) (bool, error) {
	c.mu.Lock()
	c.checksAt = append(c.checksAt, now)
	c.mu.Unlock()
	return c.counted(c.LocalChecker.TryCheckAt(ctx, now, req, d))
}

func (c *countingChecker) counted(decided bool, err error) (bool, error) {
	c.tried.Add(1)
	if !decided {
		c.undecided.Add(1)
	}
	return decided, err
}

func (c *countingChecker) EndFlowAt(now time.Time, id uint64, failed bool) {
	c.mu.Lock()
	c.flowEndsAt = append(c.flowEndsAt, now)
	c.mu.Unlock()
	c.LocalChecker.EndFlowAt(now, id, failed)
}

// Under gwbench's -policy full (a rate limiter, a flux meter and an
// adaptive concurrency limiter that never binds, whose checks may wait)
// every request is decided on the loop: no check goes to a goroutine, and
// every answer carries the decision.
func TestLoopFullPolicyDecidesOnTheLoop(t *testing.T) {
	e := allocEngine(t, allocFullPolicy)
	if !e.MayWait("ingress") {
		t.Fatal("an adaptive concurrency limiter may not wait, says the engine")
	}
	ck := &countingChecker{LocalChecker: controlpoint.NewLocalChecker(e)}
	up, _ := pathTarget(t)
	cfg := oneUpstream(up)
	cfg.Routes[0].ControlPoint = "ingress"
	addr, _ := loopTo(t, Options{Config: cfg, Checker: ck}, nil)
	acceptedOnFourClients(t, addr, "X-User: alice\r\n")
	if tried, undecided, checked := ck.tried.Load(), ck.undecided.Load(), ck.checked.Load(); tried != 100 || undecided != 0 || checked != 0 {
		t.Errorf("the loop tried %d checks (%d undecided) and checked %d on goroutines; want 100, 0, 0", tried, undecided, checked)
	}
	if own := ck.ownClock.Load(); own != 0 {
		t.Errorf("the loop asked %d checks at the checker's own clock, want none (all at the wake's)", own)
	}
}

// The loop engine under the full policy allocates what it does under a
// rate limiter alone (TestLoopRequestAllocations): a check decided on
// the loop costs no goroutine, no closure and no Post.
func TestLoopFullPolicyAllocations(t *testing.T) {
	e := allocEngine(t, allocFullPolicy)
	objects := engineAllocations(t, e, nil, func(g *Gateway) string { return serveLoopAddr(t, g) })
	want := 1.5
	if raceEnabled {
		want = 5 // as the lean engine's under the full policy
	}
	if objects > want {
		t.Errorf("the loop engine allocates %.2f objects a request under the full policy, want at most %.1f", objects, want)
	}
}

// oneSlotAtIngress lets one flow at a time through the gateway's control
// point; the others wait for the slot.
const oneSlotAtIngress = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: one-slot, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          concurrency_scheduler:
            selectors: [{control_point: ingress}]
            in_ports: {max_concurrency: {constant_signal: {value: 1}}}
            scheduler:
              default_workload_parameters: {queue_timeout: 5s}
`

// A check that would wait (the slot is held) goes off the loop, and the
// request is admitted and answered when the slot frees; the loop serves
// meanwhile.
func TestLoopCheckThatWouldWaitGoesOffTheLoop(t *testing.T) {
	e := allocEngine(t, oneSlotAtIngress)
	ck := &countingChecker{LocalChecker: controlpoint.NewLocalChecker(e)}
	release := make(chan struct{})
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				<-release
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path); err != nil {
				return
			}
		}
	})
	cfg := oneUpstream(up)
	cfg.Routes[0].ControlPoint = "ingress"
	addr, _ := loopTo(t, Options{Config: cfg, Checker: ck}, nil)
	slow, slowBR := dialLean(t, addr)
	if _, err := io.WriteString(slow, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first check", func() bool { return ck.tried.Load() > 0 })
	waiting, waitingBR := dialLean(t, addr)
	if _, err := io.WriteString(waiting, "GET /waits HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a check on a goroutine", func() bool { return ck.checked.Load() > 0 })
	if tried, undecided := ck.tried.Load(), ck.undecided.Load(); tried != 2 || undecided != 1 {
		t.Fatalf("the loop tried %d checks, %d undecided; want 2, 1", tried, undecided)
	}
	close(release)
	for _, x := range []struct {
		br   *bufio.Reader
		path string
	}{{slowBR, "/slow"}, {waitingBR, "/waits"}} {
		_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
		_ = waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(x.br, nil)
		if err != nil {
			t.Fatalf("%s: %v", x.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != x.path || resp.Header.Get("X-FluxGate-Decision") != "accepted" {
			t.Fatalf("%s: %d %q %v", x.path, resp.StatusCode, b, resp.Header)
		}
	}
	if checked := ck.checked.Load(); checked != 1 {
		t.Errorf("%d checks on goroutines, want the one that waited", checked)
	}
}

// waitUntil polls cond until it holds, failing the test past 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited 5s for %s", what)
		}
	}
}
