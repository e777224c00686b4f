package client

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// A Gate is the check-and-record step of an HTTP control point, written
// once for every server engine: Middleware (net/http) runs each request
// through one, and so do both engines of the built-in gateway (net/http
// through Middleware, fasthttp directly).
//
// The engine builds the request's flow labels and calls Admit, which asks
// the Checker. A rejected request, or one the Checker could not decide,
// is answered there; an admitted one runs, and the engine ends it with
// Admitted.End and the status it was answered with. End reports the
// flow's end to the Checker (EndFlow: an adaptive_concurrency slot is
// freed and learns the latency), records the flow (MiddlewareOptions
// Flows or Tracer) and gives the decision back to the package's pool.
// An engine that has read the clock already (an event loop reads it once
// a wake) passes its reading to TryAdmitAt, AdmitAt and Admitted.EndAt,
// and the gate reads none. A Gate is safe for concurrent use.
type Gate struct {
	c     Checker
	try   TryChecker      // c, when it is one; nil otherwise
	tryAt LocalTryChecker // c, when it is a TryChecker and one; nil otherwise
	opts  MiddlewareOptions
}

// NewGate returns the gate of the control point opts names, deciding with
// c. Admit uses ControlPoint, Flows and Tracer of opts; Labels and Tokens
// read a net/http request, for Wrap.
func NewGate(c Checker, opts MiddlewareOptions) *Gate {
	if opts.ControlPoint == "" {
		opts.ControlPoint = DefaultControlPoint
	}
	g := &Gate{c: c, opts: opts}
	g.try, _ = c.(TryChecker)
	if g.try != nil {
		g.tryAt, _ = c.(LocalTryChecker)
	}
	return g
}

// Exchange is one HTTP request at a control point and its answer, as the
// server engine serving it sees them. Admit calls its methods only while
// it runs. An implementation that is a single pointer costs no
// allocation.
type Exchange interface {
	// ResponseHeader is the answer's header, where the decision headers
	// go (flow.SetDecisionHeaders).
	ResponseHeader() flow.HeaderSetter
	// WriteJSON answers with status and v as a JSON body.
	WriteJSON(status int, v any)
	// Identity names the request in flow records: its method, path and
	// target (path and query). It is called only when the gate records
	// flows, before the request runs.
	Identity() (method, path, target string)
}

// Admitted is a flow a Gate admitted. Its zero value ends nothing.
type Admitted struct {
	g                    *Gate
	ctx                  context.Context
	c                    *checked  // from the pool until End
	start                time.Time // of the workload; zero when not tracked
	method, path, target string    // when recording
}

// Admit checks the request x at the gate's control point, with its flow
// labels and its cost in tokens (0 counts as 1), and sets the decision
// headers on x's answer. It returns the admitted flow and true, or false
// when x has been answered: rejected (flow.DeniedStatus, the decision
// headers, a JSON Denial body), or 503 {"error":"check_failed"} when the
// Checker failed. When ctx is done before a decision nothing is written:
// nobody reads an answer.
//
// The Checker sees ctx, so an engine passes one that its shutdown does
// not cancel when requests in flight are to finish.
func (g *Gate) Admit(ctx context.Context, x Exchange, labels map[string]string, tokens float64) (Admitted, bool) {
	return g.AdmitAt(ctx, time.Time{}, x, labels, tokens)
}

// AdmitAt is Admit at now, the caller's reading of the clock: the flow's
// workload starts at now, and a rejected flow is recorded at now. The
// Checker reads its own clock, if it reads one. AdmitAt is for a caller
// that has read the clock already and whose check does not wait (an
// event loop asks on the loop only checks that never wait): after a wait
// now would be stale. A zero now is the clock's reading, as in Admit.
func (g *Gate) AdmitAt(ctx context.Context, now time.Time, x Exchange, labels map[string]string, tokens float64) (Admitted, bool) {
	c := newChecked()
	c.req = flow.Request{ControlPoint: g.opts.ControlPoint, Labels: labels, Tokens: tokens}
	return g.admit(ctx, now, x, c, g.c.Check(ctx, &c.req, &c.d))
}

// TryAdmit is Admit that never waits: when the gate's Checker is a
// TryChecker and decides without waiting, it does what Admit does (the
// same headers, answers, flow records, and an Admitted to End) and
// reports decided true. Otherwise (the check would wait, or the Checker
// cannot tell) it writes nothing, holds nothing and reports decided
// false: the request is then for Admit, where waiting is fine.
func (g *Gate) TryAdmit(ctx context.Context, x Exchange, labels map[string]string, tokens float64) (a Admitted, ok, decided bool) {
	return g.TryAdmitAt(ctx, time.Time{}, x, labels, tokens)
}

// TryAdmitAt is TryAdmit at now, the caller's reading of the clock (an
// event loop reads it once a wake): the check is at now when the
// gate's Checker is a LocalTryChecker (any other reads its own clock),
// the flow's workload starts at now, and a rejected flow is recorded at
// now. A zero now is the clock's reading, as in TryAdmit.
func (g *Gate) TryAdmitAt(ctx context.Context, now time.Time, x Exchange, labels map[string]string, tokens float64) (a Admitted, ok, decided bool) {
	if g.try == nil {
		return Admitted{}, false, false
	}
	c := newChecked()
	c.req = flow.Request{ControlPoint: g.opts.ControlPoint, Labels: labels, Tokens: tokens}
	var err error
	if g.tryAt != nil && !now.IsZero() {
		decided, err = g.tryAt.TryCheckAt(ctx, now, &c.req, &c.d)
	} else {
		decided, err = g.try.TryCheck(ctx, &c.req, &c.d)
	}
	if !decided {
		c.release()
		return Admitted{}, false, false
	}
	a, ok = g.admit(ctx, now, x, c, err)
	return a, ok, true
}

// Tries reports whether TryAdmit can decide: the gate's Checker is a
// TryChecker.
func (g *Gate) Tries() bool { return g.try != nil }

// admit answers x with the outcome of c's check, which failed with err
// or decided c.d, at now (zero: the clock's reading, taken only when
// needed).
func (g *Gate) admit(ctx context.Context, now time.Time, x Exchange, c *checked, err error) (Admitted, bool) {
	d := &c.d
	if err != nil {
		c.release()
		if ctx.Err() == nil {
			x.WriteJSON(http.StatusServiceUnavailable, map[string]string{"error": "check_failed"})
		}
		return Admitted{}, false
	}
	a := Admitted{g: g, ctx: ctx, c: c}
	if g.opts.recording() {
		a.method, a.path, a.target = x.Identity()
	}
	flow.SetDecisionHeaders(x.ResponseHeader(), d)
	if !d.Accepted {
		status := flow.DeniedStatus(d)
		x.WriteJSON(status, Denial(d))
		if g.opts.recording() {
			if now.IsZero() {
				now = time.Now()
			}
			g.opts.record(ctx, a.method, a.path, a.target, d, status, now, now) // a rejected flow runs no workload
		}
		c.release()
		return Admitted{}, false
	}
	if a.Tracked() {
		if now.IsZero() {
			now = time.Now()
		}
		a.start = now
	}
	return a, true
}

// Decision is the decision that admitted the flow, valid until End. Do
// not modify it.
func (a *Admitted) Decision() *flow.Decision {
	if a.c == nil {
		return nil
	}
	return &a.c.d
}

// Tracked reports whether End needs the answer's status: the flow holds a
// slot of an adaptive_concurrency component, or the gate records flows.
// An engine need not learn the status when it is not, and may pass 0.
func (a *Admitted) Tracked() bool {
	return a.g != nil && (a.g.opts.recording() || a.c.d.FlowID != 0)
}

// End ends the admitted flow, answered with status: it reports the end to
// the Checker, failed when status is a 5xx or failed is true (the answer
// broke off, the client left), records the flow with the time since Admit
// as its workload, and gives the decision back to the pool. Call it once
// for every admitted flow, when nothing reads its Decision any more.
func (a *Admitted) End(status int, failed bool) { a.EndAt(time.Time{}, status, failed) }

// EndAt is End at now, the caller's reading of the clock: the flow ends
// at now for a LocalFlowEnder Checker (any other reads its own clock, if
// it reads one) and is recorded with the workload from its start to now.
// A now before the flow's start counts as its start: an event loop's
// reading, taken when its wake began, can be older than an admission
// made meanwhile on another goroutine. A zero now is the clock's
// reading, as in End.
func (a *Admitted) EndAt(now time.Time, status int, failed bool) {
	if a.c == nil {
		return
	}
	if a.Tracked() {
		if now.IsZero() {
			now = time.Now() // one reading for the flow's end and its record
		} else if now.Before(a.start) {
			now = a.start
		}
		endFlow(a.g.c, &a.c.d, failed || status >= 500, now)
		if a.g.opts.recording() {
			a.g.opts.record(a.ctx, a.method, a.path, a.target, &a.c.d, status, a.start, now)
		}
	}
	a.c.release()
	a.c = nil
}

// netExchange is a request net/http serves, and the writer that learns
// the status its handler answers with. Middleware takes one from a pool
// for each request and gives it back when the handler has returned.
type netExchange struct {
	flow.StatusRecorder
	r *http.Request
}

var netExchanges = sync.Pool{New: func() any { return new(netExchange) }}

func newNetExchange(w http.ResponseWriter, r *http.Request) *netExchange {
	x := netExchanges.Get().(*netExchange)
	x.ResponseWriter, x.r = w, r
	return x
}

// free returns x to the pool; x must not be used afterwards.
func (x *netExchange) free() {
	*x = netExchange{}
	netExchanges.Put(x)
}

func (x *netExchange) ResponseHeader() flow.HeaderSetter { return x.ResponseWriter.Header() }

func (x *netExchange) WriteJSON(status int, v any) { writeJSON(x.ResponseWriter, status, v) }

func (x *netExchange) Identity() (method, path, target string) {
	return x.r.Method, x.r.URL.Path, x.r.URL.RequestURI()
}
