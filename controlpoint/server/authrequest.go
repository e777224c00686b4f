package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Request headers that describe the original request to the auth_request
// adapter. They are not flow labels.
const (
	HeaderControlPoint   = "X-FluxGate-Control-Point"
	HeaderOriginalURI    = "X-Original-URI"
	HeaderOriginalMethod = "X-Original-Method"
	HeaderOriginalHost   = "X-Original-Host"

	// HeaderFlowEnd: "report" promises that the caller reports the end of
	// every admitted flow (POST /v1/flow/end with the id from
	// HeaderFlowID), as the nginx example does with post_action. Without
	// it the adapter cannot know when a flow ends, and components that
	// need ends (adaptive_concurrency) pass the flow through.
	HeaderFlowEnd = "X-FluxGate-Flow-End"
	// HeaderFlowID answers an admission that holds a slot until its end is
	// reported; only sent when the request had HeaderFlowEnd: report.
	HeaderFlowID = "X-FluxGate-Flow-Id"
)

// notLabels are the request headers the auth_request adapter never turns
// into labels: hop-by-hop headers (RFC 9110 7.6.1) and the headers that
// describe the original request.
var notLabels = map[string]bool{
	"Connection":               true,
	"Keep-Alive":               true,
	"Proxy-Connection":         true,
	"Proxy-Authenticate":       true,
	"Proxy-Authorization":      true,
	"Te":                       true,
	"Trailer":                  true,
	"Transfer-Encoding":        true,
	"Upgrade":                  true,
	"X-Original-Uri":           true,
	"X-Original-Method":        true,
	"X-Original-Host":          true,
	"X-Forwarded-Uri":          true,
	"X-Forwarded-Method":       true,
	"X-Forwarded-Host":         true,
	"X-Fluxgate-Control-Point": true,
	"X-Fluxgate-Flow-End":      true,
}

var errNoOriginalURI = errors.New("X-Original-URI (or X-Forwarded-Uri) is required: the path and query of the original request")

// authRequestFlow rebuilds the original request that an nginx
// auth_request (or another forward-auth proxy's) subrequest describes.
// Give its labels back with flow.FreeLabels once the check is done.
func authRequestFlow(r *http.Request) (controlpoint.Request, error) {
	h := r.Header
	target := firstHeader(h, ckOriginalURI, "X-Forwarded-Uri")
	if target == "" {
		return controlpoint.Request{}, errNoOriginalURI
	}
	method := firstHeader(h, ckOriginalMethod, "X-Forwarded-Method")
	if method == "" {
		method = r.Method
	}
	host := firstHeader(h, ckOriginalHost, "X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	scheme := "http"
	if p := firstHop(headerValue(h, "X-Forwarded-Proto")); p != "" {
		scheme = strings.ToLower(p)
	} else if r.TLS != nil {
		scheme = "https"
	}

	// Hop-by-hop headers include those the Connection header names.
	var listed []string
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			listed = append(listed, textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)))
		}
	}
	labels := flow.NewLabels() // the caller frees it (flow.FreeLabels)
	for k, v := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if len(v) == 0 || notLabels[ck] || slices.Contains(listed, ck) {
			continue
		}
		labels[flow.HeaderLabel(k)] = strings.Join(v, ",")
	}
	flow.CompleteHTTPLabels(labels, method, target, host, scheme)
	src := strings.TrimSpace(headerValue(h, ckRealIP))
	if src == "" {
		src = firstHop(headerValue(h, "X-Forwarded-For"))
	}
	if src != "" {
		if ip, _, err := net.SplitHostPort(src); err == nil {
			src = ip
		}
		flow.SetClientAddress(labels, src)
	}
	cp := authRequestControlPoint(h)
	if !utf8.ValidString(cp) {
		flow.FreeLabels(labels)
		return controlpoint.Request{}, fmt.Errorf("%s: %w", HeaderControlPoint, controlpoint.ErrBadControlPoint)
	}
	var reportsEnd bool
	switch v := strings.TrimSpace(headerValue(h, ckFlowEnd)); {
	case v == "":
	case strings.EqualFold(v, "report"):
		reportsEnd = true
	default:
		flow.FreeLabels(labels)
		return controlpoint.Request{}, fmt.Errorf("%s: %q: the only value is report (the caller reports each admitted flow's end to /v1/flow/end)", HeaderFlowEnd, v)
	}
	return controlpoint.Request{ControlPoint: cp, Labels: labels, NoFlowEnd: !reportsEnd}, nil
}

// authRequestControlPoint is the control point an auth_request names.
func authRequestControlPoint(h http.Header) string {
	if cp := strings.TrimSpace(headerValue(h, ckControlPoint)); cp != "" {
		return cp
	}
	return DefaultControlPoint
}

// LoopRoute reports whether method and path are a call made around
// every request a gateway proxies or an application serves, for an
// event-loop server (internal/loophttp) to answer: GET|POST
// /v1/check/http (auth_request), POST /v1/flow/end and, while no check at
// any control point may wait, POST /v1/check (the JSON check, the Python
// SDK's). A JSON check's control point is known only once its body is
// decoded; answered on a goroutine, as it would be then, it costs more
// on the loops than on net/http (BENCHMARKS.md), so such a call, and its
// connection, are left to net/http.
func (s *Server) LoopRoute(method, path string) bool {
	switch path {
	case "/v1/check/http":
		return method == http.MethodGet || method == http.MethodPost
	case "/v1/flow/end":
		return method == http.MethodPost
	case "/v1/check":
		return method == http.MethodPost && !s.engine.AnyMayWait()
	}
	return false
}

// LoopMayWait reports whether answering r, a LoopRoute call, may wait
// for I/O (a Redis limiter, a scheduler's queue, Rego at its control
// point): a server on event loops answers those on a goroutine and the
// others on the loop. Only an auth_request check may.
func (s *Server) LoopMayWait(r *http.Request) bool {
	return r.URL.Path == "/v1/check/http" && s.engine.MayWait(authRequestControlPoint(r.Header))
}

// serveAuthRequest is GET|POST /v1/check/http, for nginx auth_request:
// 200 admits the original request; a rejection answers the denied status.
// Both carry the decision headers, and an admission carries the Baggage
// that the upstream should get (the client's plus the labels classifiers
// created) and, when the caller promised to report the flow's end
// (HeaderFlowEnd) and a slot is held, the flow id to report it with.
func (s *Server) serveAuthRequest(w http.ResponseWriter, r *http.Request) {
	req, err := authRequestFlow(r)
	if err != nil {
		s.badRequest(w, r, http.StatusBadRequest, err.Error())
		return
	}
	defer flow.FreeLabels(req.Labels)
	baggage := strings.Join(r.Header["Baggage"], ",")
	d := s.decide(r.Context(), &req)
	defer s.release(d)
	h := w.Header()
	flow.SetDecisionHeaders(decisionHeader(h), d)
	h["Cache-Control"] = []string{"no-store"}
	if !d.Accepted {
		w.WriteHeader(flow.DeniedStatus(d))
		return
	}
	if b := mergeBaggage(baggage, classifierLabels(d)); b != "" {
		h["Baggage"] = []string{b}
	}
	if id := d.FlowID; id != 0 {
		h[ckFlowID] = []string{strconv.FormatUint(id, 10)}
	}
	w.WriteHeader(http.StatusOK)
}

// Canonical spellings of the headers above (http.Header's keys), so that
// a check reads and writes them without canonicalizing each time.
const (
	ckControlPoint   = "X-Fluxgate-Control-Point"
	ckOriginalURI    = "X-Original-Uri"
	ckOriginalMethod = "X-Original-Method"
	ckOriginalHost   = "X-Original-Host"
	ckFlowEnd        = "X-Fluxgate-Flow-End"
	ckFlowID         = "X-Fluxgate-Flow-Id"
	ckRealIP         = "X-Real-Ip"
)

// headerValue is h.Get(ck) for a canonical key ck.
func headerValue(h http.Header, ck string) string {
	if v := h[ck]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// decisionHeader is an http.Header that flow.SetDecisionHeaders fills
// under the canonical names of its fields without canonicalizing them
// each time, and its whole numbers without formatting floats.
type decisionHeader http.Header

func (h decisionHeader) Set(name, value string) { h[canonicalDecisionName(name)] = []string{value} }

func (h decisionHeader) SetInt(name string, v int64) { h.Set(name, strconv.FormatInt(v, 10)) }

var _ flow.HeaderIntSetter = decisionHeader(nil)

// canonicalDecisionName is textproto.CanonicalMIMEHeaderKey(name), the
// fields SetDecisionHeaders writes spelled out.
func canonicalDecisionName(name string) string {
	switch name {
	case flow.HeaderDecision:
		return "X-Fluxgate-Decision"
	case flow.HeaderReason:
		return "X-Fluxgate-Reason"
	case flow.HeaderPolicy:
		return "X-Fluxgate-Policy"
	case flow.HeaderComponent:
		return "X-Fluxgate-Component"
	case "RateLimit-Limit":
		return "Ratelimit-Limit"
	case "RateLimit-Remaining":
		return "Ratelimit-Remaining"
	case "RateLimit-Reset":
		return "Ratelimit-Reset"
	case "Retry-After":
		return name
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// firstHeader is the first non-empty value of the headers named by their
// canonical keys.
func firstHeader(h http.Header, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(headerValue(h, k)); v != "" {
			return v
		}
	}
	return ""
}

// firstHop is the first element of a comma-separated list header value.
func firstHop(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}
