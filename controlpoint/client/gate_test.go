package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/internal/policytest"
)

// memExchange is an engine that is neither net/http nor fasthttp: the
// Gate must need nothing else of a request than the Exchange methods.
type memExchange struct {
	header     http.Header
	status     int
	body       string
	identities int // Identity calls
}

func (x *memExchange) ResponseHeader() flow.HeaderSetter { return x.header }

func (x *memExchange) WriteJSON(status int, v any) {
	b, _ := json.Marshal(v)
	x.status, x.body = status, string(b)
}

func (x *memExchange) Identity() (method, path, target string) {
	x.identities++
	return "GET", "/items", "/items?page=2"
}

// TestGateSteps: one slot of adaptive concurrency and a flow observer.
// The first request is admitted with the decision headers and holds the
// slot; the second is turned away (503, the headers, a JSON body) and
// recorded as rejected; End frees the slot and records the admitted flow
// with its status, so the third is admitted.
func TestGateSteps(t *testing.T) {
	var seen flowsSeen
	g := NewGate(controlpoint.NewLocalChecker(newEngine(t, policytest.OneSlot("ingress"))), MiddlewareOptions{Flows: &seen})
	ctx := context.Background()

	x1 := &memExchange{header: http.Header{}}
	a1, ok := g.Admit(ctx, x1, map[string]string{}, 0)
	if !ok || x1.status != 0 || x1.header.Get(flow.HeaderDecision) != "accepted" || !a1.Tracked() || a1.Decision().FlowID == 0 {
		t.Fatalf("first: ok=%v status=%d headers=%v tracked=%v; want admitted, unanswered, accepted, tracked with a flow id",
			ok, x1.status, x1.header, a1.Tracked())
	}

	x2 := &memExchange{header: http.Header{}}
	if _, ok := g.Admit(ctx, x2, map[string]string{}, 0); ok {
		t.Fatal("second admitted while the only slot is held")
	}
	if x2.status != http.StatusServiceUnavailable || x2.header.Get(flow.HeaderDecision) != "rejected" || x2.body == "" {
		t.Fatalf("second answered %d %q headers %v; want 503 with a JSON body and the decision headers", x2.status, x2.body, x2.header)
	}
	if len(seen) != 1 || !seen[0].Rejected || seen[0].Status != http.StatusServiceUnavailable || seen[0].Target != "/items?page=2" {
		t.Fatalf("flows after the rejection %+v; want one rejected 503 for /items?page=2", seen)
	}

	a1.End(http.StatusTeapot, false)
	if len(seen) != 2 || seen[1].Rejected || seen[1].Status != http.StatusTeapot || seen[1].Method != "GET" {
		t.Fatalf("flows after End %+v; want the admitted GET recorded with 418", seen)
	}
	x3 := &memExchange{header: http.Header{}}
	if _, ok := g.Admit(ctx, x3, map[string]string{}, 0); !ok {
		t.Fatalf("third turned away (%d %s): End did not free the slot", x3.status, x3.body)
	}
	if x1.identities != 1 || x2.identities != 1 {
		t.Fatalf("Identity called %d and %d times; want once a request while recording", x1.identities, x2.identities)
	}
}

// Without a recorder and without a slot, End has nothing to do and the
// request's identity is never asked for; a failed check answers 503
// check_failed, and a caller gone before the decision gets no answer.
func TestGateUntrackedAndFailures(t *testing.T) {
	g := NewGate(controlpoint.NewLocalChecker(newEngine(t)), MiddlewareOptions{})
	x := &memExchange{header: http.Header{}}
	a, ok := g.Admit(context.Background(), x, map[string]string{}, 0)
	if !ok || a.Tracked() || x.identities != 0 {
		t.Fatalf("ok=%v tracked=%v identities=%d; want admitted, untracked, identity unread", ok, a.Tracked(), x.identities)
	}
	a.End(http.StatusOK, false)
	var zero Admitted
	zero.End(http.StatusOK, true) // the zero value ends nothing

	fail := NewGate(checkerFunc(func(ctx context.Context, _ *flow.Request, _ *flow.Decision) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return errors.New("agent down")
	}), MiddlewareOptions{})
	x = &memExchange{header: http.Header{}}
	if _, ok := fail.Admit(context.Background(), x, nil, 0); ok || x.status != http.StatusServiceUnavailable || x.body != `{"error":"check_failed"}` {
		t.Fatalf("failed check: ok=%v %d %s; want 503 check_failed", ok, x.status, x.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x = &memExchange{header: http.Header{}}
	if _, ok := fail.Admit(ctx, x, nil, 0); ok || x.status != 0 {
		t.Fatalf("caller gone: ok=%v status %d; want no answer", ok, x.status)
	}
}

// TryAdmit decides as Admit does when the check needs no wait; when it
// would wait (the only slot is held) nothing is written, recorded or
// held, and Admit decides. A Checker that cannot try never decides there.
func TestGateTryAdmit(t *testing.T) {
	var seen flowsSeen
	lc := controlpoint.NewLocalChecker(newEngine(t, policytest.OneSlot("ingress")))
	g := NewGate(lc, MiddlewareOptions{Flows: &seen})
	ctx := context.Background()
	if !g.Tries() {
		t.Fatal("a gate of the in-process engine cannot try")
	}
	x1 := &memExchange{header: http.Header{}}
	a1, ok, decided := g.TryAdmit(ctx, x1, map[string]string{}, 0)
	if !decided || !ok || x1.status != 0 || x1.header.Get(flow.HeaderDecision) != "accepted" || !a1.Tracked() || a1.Decision().FlowID == 0 {
		t.Fatalf("first: decided=%v ok=%v status=%d headers=%v; want admitted on the spot with the headers and a flow id", decided, ok, x1.status, x1.header)
	}
	x2 := &memExchange{header: http.Header{}}
	if _, ok, decided := g.TryAdmit(ctx, x2, map[string]string{}, 0); decided || ok {
		t.Fatalf("second, behind the held slot: decided=%v ok=%v; want left for Admit", decided, ok)
	}
	if x2.status != 0 || len(x2.header) != 0 || x2.identities != 0 || len(seen) != 0 {
		t.Fatalf("an undecided try wrote %d %v, asked the identity %d times, recorded %+v", x2.status, x2.header, x2.identities, seen)
	}
	if _, ok := g.Admit(ctx, x2, map[string]string{}, 0); ok || x2.status != http.StatusServiceUnavailable || len(seen) != 1 || !seen[0].Rejected {
		t.Fatalf("second by Admit: ok=%v status=%d flows=%+v; want rejected 503 and recorded once", ok, x2.status, seen)
	}
	a1.End(http.StatusOK, false)
	x3 := &memExchange{header: http.Header{}}
	a3, ok, decided := g.TryAdmit(ctx, x3, map[string]string{}, 0)
	if !decided || !ok {
		t.Fatalf("third: decided=%v ok=%v (%d %s); want admitted on the spot once the slot freed", decided, ok, x3.status, x3.body)
	}
	a3.End(http.StatusOK, false)

	plain := NewGate(struct{ Checker }{lc}, MiddlewareOptions{})
	x4 := &memExchange{header: http.Header{}}
	if _, _, decided := plain.TryAdmit(ctx, x4, map[string]string{}, 0); decided || plain.Tries() || x4.status != 0 || len(x4.header) != 0 {
		t.Fatalf("a Checker that cannot try: decided=%v tries=%v wrote %d %v", decided, plain.Tries(), x4.status, x4.header)
	}
}
