package gateway

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/metricnames"
)

// proxied is what one proxied request carries through the handler chain.
type proxied struct {
	route    *route
	upstream *upstream              // set by forward
	host     atomic.Pointer[string] // target of the last attempt
	err      error                  // transport error of the last attempt; set before ErrorHandler runs
	// bodyFailed: reading the target's response body failed (net/http
	// engine; the fast engine's relay keeps its own).
	bodyFailed bool
	rec        answerWriter  // the answer's writer and status (net/http engine)
	in         *http.Request // the client's request (net/http engine)
	body       *clientBody   // the client's request body (net/http engine), or nil
	// now is the request's last reading of the clock, which flowClock
	// tells; zero: flowClock reads the clock. Set just before a stamp
	// that may use it, with no wait since the reading.
	now time.Time
	// end is when the answer ended, when the engine read the clock then
	// (the lean engine's relay), else zero.
	end time.Time
}

// flowClock tells a flow's reading of the clock (proxied.now) to what
// takes a clock, or reads the clock when there is none. A pointer: no
// allocation as a clock.
type flowClock proxied

func (c *flowClock) Now() time.Time {
	if c.now.IsZero() {
		return time.Now()
	}
	return c.now
}

type flowKey struct{}

func flowFrom(ctx context.Context) *proxied {
	f, _ := ctx.Value(flowKey{}).(*proxied)
	return f
}

// forward sends r, the flow fl, to the route's upstream group through its
// breaker: on the direct path when it can carry r, else through
// ReverseProxy.
//
// now is the clock's reading when the request was admitted, with no wait
// since (zero: none); it stamps the breaker's check, the start of the
// request's time at the upstream and of its first attempt.
func (g *Gateway) forward(rt *route, w http.ResponseWriter, r *http.Request, fl *proxied, now time.Time) {
	u := rt.choose(netRequest{r})
	fl.upstream = u
	if now.IsZero() {
		now = time.Now()
	}
	fl.now = now
	permit, ok := u.enter((*netExchange)(fl), (*flowClock)(fl)) // pointers: no allocation
	if !ok {
		return
	}
	direct := directCarries(r, u)
	if !noBodyOn(r) {
		fl.body = newClientBody(r.Body, r.ContentLength)
		// The body's deadline is lifted once it is read: net/http's
		// background read for a client that leaves runs on after it, and
		// a response may stream for longer than the body took.
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(now.Add(g.opts.BodyReadTimeout)) == nil {
			fl.body.end = func() { _ = rc.SetReadDeadline(time.Time{}) }
		}
		r.Body = fl.body
	}
	start := now
	relayed := false
	// Both paths panic with http.ErrAbortHandler when copying the body
	// fails, on either side; the outcome is recorded all the same, or a
	// half-open breaker would keep the probe's place for good.
	defer func() {
		aborted := !relayed
		// A client that left says nothing of the upstream.
		gone := fl.err != nil && (r.Context().Err() != nil || fl.body.failed() != nil) || aborted && !fl.bodyFailed
		u.leave(rt, permit, start, wallClock{}, gone, fl.err != nil || fl.bodyFailed || fl.rec.Status >= 500)
	}()
	if !direct || !g.direct(w, r, fl, u, now) {
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), flowKey{}, fl)))
	}
	relayed = true
}

// answerWriter is the writer a flow's answer goes through on the
// net/http engine: it records the status and, after an informational
// answer (103 Early Hints), puts the decision's fields back on the final
// one. Relaying a 1xx clears the header (ReverseProxy does, so that the
// 1xx's fields do not reach the final answer), and with it the fields the
// control point set.
type answerWriter struct {
	flow.StatusRecorder
	decision *flow.Decision // the admitting decision, or nil
	informed bool           // an informational answer went out since the fields were set
}

func (a *answerWriter) WriteHeader(code int) {
	switch {
	case code >= 100 && code < 200 && code != http.StatusSwitchingProtocols:
		a.informed = true
	case a.informed && a.decision != nil:
		flow.SetDecisionHeaders(a.Header(), a.decision)
		a.informed = false
	}
	a.StatusRecorder.WriteHeader(code)
}

// responder answers a request the gateway itself rejects, in the engine
// that received it.
type responder interface {
	// reject answers status with the gateway's rejection headers
	// (X-FluxGate-Decision: rejected, X-FluxGate-Reason: reason), a
	// Retry-After when retryAfter > 0 and body as JSON.
	reject(status int, reason string, retryAfter int64, body any)
}

// netResponder answers through net/http.
type netResponder struct{ w http.ResponseWriter }

func (n netResponder) reject(status int, reason string, retryAfter int64, body any) {
	h := n.w.Header()
	setReason(h, reason)
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	}
	writeJSON(n.w, status, body)
}

// clock tells the time where a request is served: the wall clock
// (wallClock) on the goroutine engines, the loop's iteration clock
// (eventloop.Loop.Now) on the loop engine. Read only when needed.
type clock interface{ Now() time.Time }

// wallClock is time.Now.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// enter passes u's breaker, if any. When the breaker is open it answers
// through rs and returns false.
func (u *upstream) enter(rs responder, clk clock) (breaker.Permit, bool) {
	if u.breaker == nil {
		u.budget.request()
		return breaker.Permit{}, true
	}
	p, err := u.breaker.AllowAt(clk.Now())
	if err != nil {
		var oe *breaker.OpenError
		retry := int64(1)
		if errors.As(err, &oe) && oe.RetryAfter > 0 {
			retry = int64(math.Ceil(oe.RetryAfter.Seconds()))
		}
		rs.reject(http.StatusServiceUnavailable, metricnames.ReasonBreakerOpen, retry, map[string]any{
			"error": metricnames.ReasonBreakerOpen, "upstream": u.name, "retry_after_seconds": retry,
		})
		return breaker.Permit{}, false
	}
	u.budget.request()
	return p, true
}

// leave records the outcome of a request that entered u at start with
// the canary analysis (both groups of a route with a canary) and the
// breaker. gone: the client left before an answer, which says nothing
// about the upstream.
func (u *upstream) leave(rt *route, permit breaker.Permit, start time.Time, clk clock, gone, failed bool) {
	if u.breaker == nil && (rt.cs == nil || gone) {
		return
	}
	now := clk.Now()
	if rt.cs != nil && !gone {
		rt.cs.observe(now, now.Sub(start), failed, u == rt.canary)
	}
	if u.breaker != nil {
		o := breaker.Success
		switch {
		case gone:
			o = breaker.Ignored
		case failed:
			o = breaker.Failure
		}
		u.breaker.RecordAt(now, permit, o)
	}
}

// rewrite builds the outbound request: X-Forwarded-For (appended to the
// client's chain), -Host and -Proto, the client's Host header kept. The
// target is chosen by retryTransport.
func rewrite(pr *httputil.ProxyRequest) {
	if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "upstream.invalid" // replaced per attempt
	pr.Out.Host = pr.In.Host
}

// errNoTarget is returned when a group has no target left to try.
var errNoTarget = errors.New("gateway: no upstream target available")

// retryTransport picks a target per attempt and retries idempotent,
// bodiless requests that failed to connect on another target, within the
// group's retry budget.
type retryTransport Gateway

func (rt *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	g := (*Gateway)(rt)
	fl := flowFrom(req.Context())
	u := fl.upstream
	var resp *http.Response
	err := g.try(u, fl, time.Time{}, retryable(req.Method, req.Body == nil || req.Body == http.NoBody),
		func() bool { return req.Context().Err() != nil || fl.body.failed() != nil },
		func(t *target, _ time.Time) (int, error) {
			req.URL.Scheme, req.URL.Host = u.scheme, t.addr
			var err error
			if resp, err = u.transport.RoundTrip(req); err != nil {
				return 0, err
			}
			if fl.body.failed() != nil {
				_ = resp.Body.Close()
				return 0, errClientBody // an answer to a body cut short
			}
			return resp.StatusCode, nil
		})
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols { // ReverseProxy writes to an upgraded body
		resp.Body = &targetBody{ReadCloser: resp.Body, fl: fl, ctx: req.Context()}
	}
	return resp, err
}

// targetBody notes in fl when reading a target's response body fails,
// unless because the client left (ctx, the client's request, is done).
type targetBody struct {
	io.ReadCloser
	fl  *proxied
	ctx context.Context
}

func (b *targetBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() == nil {
		b.fl.bodyFailed = true
	}
	return n, err
}

// try sends one request to a target of u chosen per attempt: send makes
// one attempt, which started at start, and returns the response status.
// An attempt that fails to connect (see isConnectError) moves on to
// another target when the request is retryable, attempts are left and
// the retry budget allows. It records every attempt with its target and
// returns the last error, also kept in fl.err. now, the caller's reading
// of the clock with no wait since (zero: none), is the first attempt's
// start; an attempt's end, and the start of any attempt after a failed
// one, read the clock.
func (g *Gateway) try(u *upstream, fl *proxied, now time.Time, retryable bool, clientGone func() bool, send func(t *target, start time.Time) (int, error)) error {
	var tried []*target
	var last error
	fl.now = now
	for attempt := 0; ; attempt++ {
		t, start, err := u.attemptTarget(fl, tried, last, (*flowClock)(fl))
		if err != nil {
			return err
		}
		status, err := send(t, start)
		if !g.attemptDone(u, fl, t, start, wallClock{}, status, err, retryable, attempt, clientGone) {
			return err
		}
		fl.now = time.Time{} // the next attempt follows a wait
		tried = append(tried, t)
		last = err
	}
}

// attemptTarget picks the target of an attempt (not one of tried) and
// counts the attempt in flight to it, from start. When none is left it
// returns last, or errNoTarget when no attempt was made, also kept in
// fl.err. The attempt ends with attemptDone.
func (u *upstream) attemptTarget(fl *proxied, tried []*target, last error, clk clock) (t *target, start time.Time, err error) {
	start = clk.Now()
	t = u.pick(start, tried)
	if t == nil {
		if last == nil {
			last = errNoTarget
		}
		fl.err = last // after retries, what the last target said
		return nil, start, last
	}
	fl.host.Store(&t.addr)
	t.inFlight.Add(1)
	return t, start, nil
}

// attemptDone records the attempt on t that started at start and ended,
// by clk, with status or err: an attempt that fails to connect (see
// isConnectError) reports true, to move on to another target, when the
// request is retryable, attempts are left and the retry budget allows.
// Otherwise err, if any, is kept in fl.err. clientGone (nil: no) tells
// whether the client left, which spares the target.
func (g *Gateway) attemptDone(u *upstream, fl *proxied, t *target, start time.Time, clk clock, status int, err error, retryable bool, attempt int, clientGone func() bool) (again bool) {
	t.inFlight.Add(-1)
	end := clk.Now()
	if err == nil {
		t.observe(end, end.Sub(start), status >= 500)
		return false
	}
	if clientGone != nil && clientGone() {
		fl.err = err
		return false // the client left
	}
	t.observe(end, end.Sub(start), true)
	if isRefused(err) {
		// Nothing listens there: drain it at once rather than spend
		// the retry budget on it until health checks notice.
		t.ejected.Store(max(t.ejected.Load(), end.Add(u.refusedEjectFor()).UnixNano()))
	}
	if isConnectError(err) && retryable && attempt < u.retries.Attempts && u.budget.retry() {
		return true
	}
	fl.err = err
	g.logger.Debug("upstream round trip failed", "upstream", u.name, "target", t.addr, "attempt", attempt, "err", err)
	return false
}

// isRefused reports whether a connect was refused.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

// isConnectError reports whether err is a failed or broken connection
// with no response: refused, reset, or closed by the target (as when it
// is killed with requests in flight). Timeouts are not: the target may
// still be working on the request.
func isConnectError(err error) bool {
	if isTimeout(err) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, fasthttp.ErrConnectionClosed)
}

// isTimeout reports whether err is a timeout of net/http, the fast
// engine or the network.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) && te.Timeout()
}

// retryable reports whether sending a request again is safe: an
// idempotent method and no body to replay.
func retryable(method string, bodiless bool) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return bodiless
	}
	return false
}

// proxyError is ReverseProxy's ErrorHandler: answerError for the flow
// r's context carries.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	g.answerError(w, r, flowFrom(r.Context()), err)
}

// answerError answers the flow fl, the request r, whose upstream could
// not be reached or whose body failed to arrive.
func (g *Gateway) answerError(w http.ResponseWriter, r *http.Request, fl *proxied, err error) {
	if berr := fl.body.failed(); berr != nil {
		// net/http cancels the request's context on any failed read of
		// the connection, the body's included: a client that stalled or
		// only half-closed still reads its answer.
		if fl.err == nil {
			fl.err = err
		}
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close") // the rest of the body is not framed
		}
		clientFault(netResponder{w}, berr)
		return
	}
	if r.Context().Err() != nil {
		return // the client is gone
	}
	if fl.err == nil {
		fl.err = err // a failure after the round trip, such as copying the body
	}
	g.upstreamError(netResponder{w}, fl, err)
}

// upstreamError answers a request whose upstream could not be reached:
// 504 on a timeout, 503 when no target is left, 502 otherwise.
func (g *Gateway) upstreamError(rs responder, fl *proxied, err error) {
	status, reason := http.StatusBadGateway, "upstream_unavailable"
	switch {
	case errors.Is(err, errNoTarget):
		status, reason = http.StatusServiceUnavailable, "no_healthy_upstream"
	case isTimeout(err):
		status, reason = http.StatusGatewayTimeout, "upstream_timeout"
	}
	g.logger.Debug("proxy error", "route", fl.route.id, "upstream", fl.upstream.name, "err", err)
	rs.reject(status, reason, 0, map[string]string{"error": reason, "upstream": fl.upstream.name})
}

// statusLabel avoids strconv allocations for the common codes.
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 429:
		return "429"
	case 502:
		return "502"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}

// copyBuffers lends ReverseProxy the buffers it copies response bodies
// through: without a pool it makes one of 32 KiB a request, which was
// most of the net/http engine's allocation.
var copyBuffers = &bufferPool{}

const copyBufferSize = 32 << 10

type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return make([]byte, copyBufferSize)
}

func (bp *bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize {
		bp.p.Put((*[copyBufferSize]byte)(b))
	}
}
