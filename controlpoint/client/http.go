package client

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// DefaultControlPoint is the control point of the adapters unless their
// options name another.
const DefaultControlPoint = "ingress"

// MiddlewareOptions configures Middleware.
type MiddlewareOptions struct {
	// ControlPoint names where the check happens. Default "ingress".
	ControlPoint string
	// Labels returns extra flow labels for r, added over those of
	// flow.RequestLabels (method, target, host, scheme, headers,
	// baggage, source address). Nil means none.
	Labels func(r *http.Request) map[string]string
	// Tokens returns the cost of r. Nil means 1.
	Tokens func(r *http.Request) float64
	// Tracer, when set, records a span for every checked request with the
	// Flux Meter attributes (control point, flux meters, decision, HTTP
	// status, workload duration); use otlpspans.Emitter.Tracer (package
	// controlpoint/client/otlpspans) to export them to the agent, or any
	// tracer of the application's own. Nil records nothing.
	Tracer trace.Tracer
	// Flows, when set, receives every checked request as a flux meter
	// flow in process instead of a span: for a control point in the
	// agent's own process (pass the agent's flux meter processor). It
	// takes precedence over Tracer.
	Flows FlowObserver
}

// FlowObserver takes finished flows in process; *fluxmeter.Processor is one.
// The record's FluxMeters are the decision's, which is reused once Observe
// returns: an observer that keeps them copies them.
type FlowObserver interface {
	Observe(flow.Record)
}

// recording reports whether record records anything.
func (o MiddlewareOptions) recording() bool { return o.Flows != nil || o.Tracer != nil }

// record reports one checked request at o.ControlPoint, decided by d and
// answered with status, whose workload ran from start to end: to Flows,
// else as a span on Tracer, else nowhere. path is the URL path, target
// the path and query.
func (o MiddlewareOptions) record(ctx context.Context, method, path, target string, d *flow.Decision, status int, start, end time.Time) {
	switch {
	case o.Flows != nil:
		o.Flows.Observe(flow.Record{
			ControlPoint: o.ControlPoint, FluxMeters: d.FluxMeters,
			Rejected: !d.Accepted,
			Status:   status, WorkloadMillis: float64(end.Sub(start)) / 1e6,
			Method: method, Target: target,
		})
	case o.Tracer != nil:
		FlowSpan(o.Tracer, ctx, method, path, target, o.ControlPoint, d, status, start, end)
	}
}

// Middleware checks every request with c before the next handler runs,
// through a Gate.
//
// The check uses r.Context(), so a client that disconnects cancels it;
// then nothing is written. A rejected request gets
// flow.DeniedStatus (429 rate limited, 403 not sampled, 503 failed
// closed), the decision headers of flow.SetDecisionHeaders and a
// JSON body:
//
//	{"error":"rate_limited","policy":"default/per-user-limit","retry_after_seconds":12}
//
// An admitted request gets the decision headers and reaches next with the
// decision in its context (FromContext), valid until next returns. An error from c answers 503 with
// {"error":"check_failed"}: pass a Guard to choose a failure mode instead.
func Middleware(c Checker, opts MiddlewareOptions) func(http.Handler) http.Handler {
	return NewGate(c, opts).Wrap
}

// Wrap is Middleware with g: it checks every request net/http serves
// before next runs.
func (g *Gate) Wrap(next http.Handler) http.Handler {
	opts := g.opts
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		labels := flow.RequestLabels(r)
		if opts.Labels != nil {
			for k, v := range opts.Labels(r) {
				labels[k] = v
			}
		}
		var tokens float64
		if opts.Tokens != nil {
			tokens = opts.Tokens(r)
		}
		x := newNetExchange(w, r)
		a, ok := g.Admit(r.Context(), x, labels, tokens)
		if !ok {
			x.free()
			return
		}
		r = r.WithContext(newContext(r.Context(), a.Decision()))
		if !a.Tracked() {
			x.free()
			defer a.End(0, false) // gives the decision back, even on a panic
			next.ServeHTTP(w, r)
			return
		}
		rec := &x.StatusRecorder
		returned := false
		// Deferred, so that a handler that panics (as ReverseProxy does
		// with http.ErrAbortHandler when a body breaks off) still
		// counts, as 500 when it had not answered yet, and frees the
		// slot its flow holds.
		defer func() {
			if rec.Status == 0 {
				rec.Status = http.StatusOK
				if !returned {
					rec.Status = http.StatusInternalServerError
				}
			}
			a.End(rec.Status, false)
			x.free()
		}()
		next.ServeHTTP(rec, r)
		returned = true
	})
}

// DeniedBody is the JSON body of a rejected HTTP request.
type DeniedBody struct {
	Error             string `json:"error"`
	Policy            string `json:"policy,omitempty"`
	RetryAfterSeconds int64  `json:"retry_after_seconds"`
}

// Denial is the body that answers a request d rejected.
func Denial(d *flow.Decision) DeniedBody {
	b := DeniedBody{Error: flow.ReasonLabel(d.Reason)}
	if l := d.Rejector(); l != nil {
		b.Policy = l.PolicyNamespace + "/" + l.PolicyName
	}
	if w := d.RetryAfter(); w > 0 {
		b.RetryAfterSeconds = int64(math.Ceil(w.Seconds()))
	}
	return b
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

type ctxKey struct{}

func newContext(ctx context.Context, d *flow.Decision) context.Context {
	return context.WithValue(ctx, ctxKey{}, d)
}

// FromContext returns the decision that admitted the request whose
// context is ctx, or nil. Handlers and span emitters read the flux meter
// names (FluxMeters) and classifier labels from it. It is valid until the
// handler returns: the middleware then reuses it. Do not modify it, and
// copy what is needed later.
func FromContext(ctx context.Context) *flow.Decision {
	d, _ := ctx.Value(ctxKey{}).(*flow.Decision)
	return d
}
