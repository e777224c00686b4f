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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
)

// flow is what one proxied request carries through the handler chain.
type flow struct {
	route    *route
	upstream *upstream              // set by forward
	host     atomic.Pointer[string] // target of the last attempt
	err      error                  // transport error of the last attempt; set before ErrorHandler runs
	rec      *recorder
}

type flowKey struct{}

func flowFrom(ctx context.Context) *flow {
	f, _ := ctx.Value(flowKey{}).(*flow)
	return f
}

// forward sends r to the route's upstream group through its breaker.
func (g *Gateway) forward(rt *route, w http.ResponseWriter, r *http.Request) {
	fl := flowFrom(r.Context())
	u := rt.choose(r)
	fl.upstream = u
	var permit breaker.Permit
	if u.breaker != nil {
		p, err := u.breaker.AllowAt(time.Now())
		if err != nil {
			var oe *breaker.OpenError
			retry := int64(1)
			if errors.As(err, &oe) && oe.RetryAfter > 0 {
				retry = int64(math.Ceil(oe.RetryAfter.Seconds()))
			}
			setReason(w.Header(), "breaker_open")
			w.Header().Set("Retry-After", strconv.FormatInt(retry, 10))
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{
				"error": "breaker_open", "upstream": u.name, "retry_after_seconds": retry,
			})
			return
		}
		permit = p
	}
	u.budget.request()
	start := time.Now()
	g.proxy.ServeHTTP(w, r)
	if u == rt.canary && !(r.Context().Err() != nil && fl.err != nil) { // a client that left says nothing
		rt.cs.observe(time.Now(), time.Since(start), fl.err != nil || fl.rec.status >= 500)
	}
	if u.breaker != nil {
		o := breaker.Success
		switch {
		case r.Context().Err() != nil && fl.err != nil:
			o = breaker.Ignored // the client left; says nothing about the upstream
		case fl.err != nil, fl.rec.status >= 500:
			o = breaker.Failure
		}
		u.breaker.RecordAt(time.Now(), permit, o)
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
	var tried []*target
	for attempt := 0; ; attempt++ {
		now := time.Now()
		t := u.pick(now, tried)
		if t == nil {
			fl.err = errNoTarget
			return nil, errNoTarget
		}
		addr := t.addr
		fl.host.Store(&addr)
		req.URL.Scheme, req.URL.Host = u.scheme, t.addr
		t.inFlight.Add(1)
		resp, err := u.transport.RoundTrip(req)
		t.inFlight.Add(-1)
		end := time.Now()
		if err == nil {
			t.observe(end, end.Sub(now), resp.StatusCode >= 500)
			return resp, nil
		}
		if req.Context().Err() != nil {
			fl.err = err
			return nil, err // the client left
		}
		t.observe(end, end.Sub(now), true)
		if isRefused(err) {
			// Nothing listens there: drain it at once rather than spend
			// the retry budget on it until health checks notice.
			t.ejected.Store(max(t.ejected.Load(), end.Add(u.refusedEjectFor()).UnixNano()))
		}
		if isConnectError(err) && retryable(req) && attempt < u.retries.Attempts && u.budget.retry() {
			tried = append(tried, t)
			continue
		}
		fl.err = err
		g.logger.Debug("upstream round trip failed", "upstream", u.name, "target", t.addr, "attempt", attempt, "err", err)
		return nil, err
	}
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
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// retryable reports whether sending req again is safe: an idempotent
// method and no body to replay.
func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody
}

// proxyError answers a request whose upstream could not be reached: 504
// on a timeout, 503 when no target is left, 502 otherwise.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client is gone
	}
	fl := flowFrom(r.Context())
	if fl.err == nil {
		fl.err = err // a failure after the round trip, such as copying the body
	}
	status, reason := http.StatusBadGateway, "upstream_unavailable"
	var ne net.Error
	switch {
	case errors.Is(err, errNoTarget):
		status, reason = http.StatusServiceUnavailable, "no_healthy_upstream"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		status, reason = http.StatusGatewayTimeout, "upstream_timeout"
	}
	g.logger.Debug("proxy error", "route", fl.route.id, "upstream", fl.upstream.name, "err", err)
	setReason(w.Header(), reason)
	writeJSON(w, status, map[string]string{"error": reason, "upstream": fl.upstream.name})
}

// recorder remembers the status written through it.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	if code == http.StatusSwitchingProtocols {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush and hijack (WebSocket).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush supports streaming through writers that only assert http.Flusher.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
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

// countedConn decrements fluxgate_upstream_active_connections once, on
// Close.
type countedConn struct {
	net.Conn
	gauge prometheus.Gauge
	once  sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.gauge.Dec)
	return c.Conn.Close()
}
