package flow

import (
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"

	"github.com/fluxgate/fluxgate/metricnames"
)

// Flow label keys for HTTP flows, shared by every HTTP adapter and the SDK
// middleware, after the OpenTelemetry HTTP semantic conventions. Every
// HTTP flow carries both the current names (url.path, http.request.method,
// server.address, ...) and the older ones (http.target, http.method,
// http.host, ...) that Aperture's policies and earlier FluxGate policies
// select on.
const (
	LabelHTTPMethod    = "http.method"
	LabelHTTPTarget    = "http.target"
	LabelHTTPHost      = "http.host"
	LabelHTTPScheme    = "http.scheme"
	LabelSourceAddress = "source.address"
	// LabelHeaderPrefix + header name (lower case, "-" → "_").
	LabelHeaderPrefix = "http.request.header."

	// Current semantic conventions.
	LabelRequestMethod = "http.request.method"
	LabelURLPath       = "url.path"
	LabelURLQuery      = "url.query" // without "?"; absent when the target has none
	LabelURLScheme     = "url.scheme"
	LabelServerAddress = "server.address" // the host, without a port
	LabelServerPort    = "server.port"    // absent when the host names none
	LabelClientAddress = "client.address"
)

// Response headers that explain a decision to HTTP clients.
const (
	HeaderDecision  = "X-FluxGate-Decision" // accepted | rejected
	HeaderReason    = "X-FluxGate-Reason"   // rate_limited, not_sampled, ...
	HeaderPolicy    = "X-FluxGate-Policy"   // namespace/name of the deciding policy
	HeaderComponent = "X-FluxGate-Component"
)

// HeaderLabel is the flow label key of an HTTP header: the prefix and
// the name in lower case with '-' as '_'. The result never shares memory
// with name, so name may be a view of a buffer that is reused later.
func HeaderLabel(name string) string {
	if k, ok := commonHeaderLabels[name]; ok {
		return k // the check path's usual headers cost no allocation
	}
	return headerLabel(name)
}

func headerLabel(name string) string {
	var b strings.Builder
	b.Grow(len(LabelHeaderPrefix) + len(name))
	b.WriteString(LabelHeaderPrefix)
	for i := range len(name) {
		c := name[i]
		switch {
		case c >= utf8.RuneSelf:
			// Not a token (RFC 9110); lower-case it as Unicode does.
			return LabelHeaderPrefix + strings.ReplaceAll(strings.ToLower(name), "-", "_")
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '-':
			c = '_'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// commonHeaderLabels holds the label keys of common request headers, by
// their canonical names (as Go's and fasthttp's servers spell them). It
// is fixed, so a client's made-up names cannot grow it.
var commonHeaderLabels = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Baggage", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Forwarded", "If-Modified-Since",
		"If-None-Match", "Origin", "Pragma", "Referer", "Traceparent", "Tracestate", "User-Agent",
		"X-Api-Key", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
		"X-Request-Id", "X-User", "X-User-Id", "X-Tenant", "X-Tenant-Id",
	} {
		m[name] = headerLabel(name)
	}
	return m
}()

var baggageLabel = HeaderLabel("Baggage")

// credentialLabels are the header labels that carry credentials. Checks
// see them (a limit per API key, a classifier on a token), but telemetry
// a flow carries onward never does.
var credentialLabels = map[string]bool{
	HeaderLabel("Authorization"):       true,
	HeaderLabel("Proxy-Authorization"): true,
	HeaderLabel("Cookie"):              true,
	HeaderLabel("X-Api-Key"):           true,
}

// IsCredentialLabel reports whether the flow label k is a request header
// that carries credentials (Authorization, Proxy-Authorization, Cookie,
// X-Api-Key), whose value must not leave the check in telemetry.
func IsCredentialLabel(k string) bool { return credentialLabels[k] }

// HeaderSetter sets one response header, replacing earlier values.
type HeaderSetter interface {
	Set(name, value string)
}

// HeaderIntSetter is a HeaderSetter that writes a whole number itself,
// with no string made for it: SetDecisionHeaders gives it the RateLimit
// numbers (the lean gateway engine's answer head is one).
type HeaderIntSetter interface {
	HeaderSetter
	SetInt(name string, v int64)
}

// AddHeaderLabel adds one header line to labels built for a request whose
// headers come one line at a time: a repeated header's values are joined
// with "," as HTTPLabels joins them.
func AddHeaderLabel(labels map[string]string, name, value string) {
	k := HeaderLabel(name)
	if prior, ok := labels[k]; ok {
		labels[k] = prior + "," + value
		return
	}
	labels[k] = value
}

// HTTPLabels returns the flow labels of an HTTP request: method, target
// (path and query), host, scheme, every header, and the entries of a W3C
// baggage header. Baggage entries do not override the other labels.
func HTTPLabels(method, target, host, scheme string, header http.Header) map[string]string {
	labels := make(map[string]string, len(header)+13) // and CompleteHTTPLabels' own: made once
	return addHTTPLabels(labels, method, target, host, scheme, header)
}

func addHTTPLabels(labels map[string]string, method, target, host, scheme string, header http.Header) map[string]string {
	for name, vals := range header {
		if len(vals) > 0 {
			labels[HeaderLabel(name)] = strings.Join(vals, ",")
		}
	}
	return CompleteHTTPLabels(labels, method, target, host, scheme)
}

// CompleteHTTPLabels finishes labels that hold a request's header labels
// (HeaderLabel, repeated headers joined with ","; see AddHeaderLabel) as
// HTTPLabels does: it adds the baggage entries, the method, target, host
// and scheme, and returns labels.
func CompleteHTTPLabels(labels map[string]string, method, target, host, scheme string) map[string]string {
	if b, ok := labels[baggageLabel]; ok {
		ParseBaggage(b, labels)
	}
	labels[LabelHTTPMethod] = method
	labels[LabelHTTPTarget] = target
	labels[LabelHTTPHost] = host
	labels[LabelHTTPScheme] = scheme
	labels[LabelRequestMethod] = method
	labels[LabelURLScheme] = scheme
	path, query, hasQuery := strings.Cut(target, "?")
	labels[LabelURLPath] = path
	if hasQuery {
		labels[LabelURLQuery] = query
	}
	labels[LabelServerAddress] = host
	if strings.IndexByte(host, ':') >= 0 { // most carry no port, and SplitHostPort's error allocates
		if h, port, err := net.SplitHostPort(host); err == nil {
			labels[LabelServerAddress], labels[LabelServerPort] = h, port
		}
	}
	return labels
}

// SetClientAddress sets the client's address as source.address and
// client.address.
func SetClientAddress(labels map[string]string, addr string) {
	labels[LabelSourceAddress] = addr
	labels[LabelClientAddress] = addr
}

// RequestLabels is HTTPLabels for a request a Go server received, plus
// the client address.
func RequestLabels(r *http.Request) map[string]string {
	return AddRequestLabels(make(map[string]string, len(r.Header)+15), r)
}

// AddRequestLabels adds the labels RequestLabels gives r to labels, an
// empty map the caller may reuse once the check is done (a Checker keeps
// none of its request), and returns labels.
func AddRequestLabels(labels map[string]string, r *http.Request) map[string]string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	addHTTPLabels(labels, r.Method, r.URL.RequestURI(), r.Host, scheme, r.Header)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		SetClientAddress(labels, host)
	}
	return labels
}

// ParseBaggage adds the members of a W3C baggage header value
// ("k1=v1,k2=v2;prop") to labels, keeping labels already set. Malformed
// members are skipped.
func ParseBaggage(value string, labels map[string]string) {
	for member := range strings.SplitSeq(value, ",") {
		member, _, _ = strings.Cut(member, ";") // drop properties
		k, v, ok := strings.Cut(member, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if _, exists := labels[k]; exists {
			continue
		}
		if dv, err := url.PathUnescape(strings.TrimSpace(v)); err == nil {
			labels[k] = dv
		}
	}
}

// SetDecisionHeaders writes the headers that explain d: the decision,
// and for a rejection the reason, the deciding policy and component,
// Retry-After, and the RateLimit-Limit / -Remaining / -Reset of the
// limiter that denied. An accepted flow gets the RateLimit headers of the
// rate limiter with the fewest tokens left, among those that decided: a
// global limiter that failed open did not learn its bucket (its Remaining
// is no count), and a client told 0 would hold back for nothing.
//
// h is an http.Header or any header that sets a value by name (such as
// fasthttp's ResponseHeader).
func SetDecisionHeaders(h HeaderSetter, d *Decision) {
	var lim *LimiterDecision
	if !d.Accepted {
		h.Set(HeaderDecision, "rejected")
		h.Set(HeaderReason, ReasonLabel(d.Reason))
		lim = d.Rejector()
		if lim != nil {
			h.Set(HeaderPolicy, lim.PolicyNamespace+"/"+lim.PolicyName)
			h.Set(HeaderComponent, lim.ComponentID)
		}
		if w := d.RetryAfter(); w > 0 {
			h.Set("Retry-After", ceilSeconds(w))
		}
	} else {
		h.Set(HeaderDecision, "accepted")
		for i := range d.Limiters {
			l := &d.Limiters[i]
			if l.ComponentType == "rate_limiter" && finite(l.Limit) > 0 && !failedOpen(l) && (lim == nil || finite(l.Remaining) < finite(lim.Remaining)) {
				lim = l
			}
		}
	}
	if lim != nil && lim.ComponentType == "rate_limiter" {
		setWhole(h, "RateLimit-Limit", math.Floor(finite(lim.Limit)))
		setWhole(h, "RateLimit-Remaining", math.Floor(finite(lim.Remaining)))
		h.Set("RateLimit-Reset", ceilSeconds(onWire(lim.Reset)))
	}
}

// failedOpen reports whether l let the flow through by its fail_open
// failure mode, without its store's answer.
func failedOpen(l *LimiterDecision) bool {
	return strings.HasPrefix(l.Failure, metricnames.ModeFailOpen+":")
}

// setWhole sets name to the whole number v as strconv.FormatFloat(v, 'f',
// -1, 64) writes it: through SetInt when h is a HeaderIntSetter and v an
// int64 that converts exactly (0 ≤ v < 2⁵³, not −0), which is the same
// text.
func setWhole(h HeaderSetter, name string, v float64) {
	if is, ok := h.(HeaderIntSetter); ok && v >= 0 && v < 1<<53 && !math.Signbit(v) {
		is.SetInt(name, int64(v))
		return
	}
	h.Set(name, strconv.FormatFloat(v, 'f', -1, 64))
}

// DeniedStatus is the HTTP status for a rejected flow: the component's
// denied_response_status_code, else 429 for rate limiting, 403 for not
// sampled, 503 otherwise.
func DeniedStatus(d *Decision) int {
	if c := d.StatusCode; c >= 100 && c <= 599 {
		return c
	}
	switch d.Reason {
	case ReasonRateLimited:
		return http.StatusTooManyRequests
	case ReasonNotSampled:
		return http.StatusForbidden
	}
	return http.StatusServiceUnavailable
}

func ceilSeconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// ReasonLabel is the short, lower-case name of a reject reason
// ("rate_limited"), as it appears in metrics, logs and the
// X-FluxGate-Reason header.
func ReasonLabel(r Reason) string {
	switch r {
	case pb.RejectReason_REJECT_REASON_NONE:
		return metricnames.ReasonNone
	case pb.RejectReason_REJECT_REASON_RATE_LIMITED:
		return metricnames.ReasonRateLimited
	case pb.RejectReason_REJECT_REASON_NOT_SAMPLED:
		return metricnames.ReasonNotSampled
	case pb.RejectReason_REJECT_REASON_NO_TOKENS:
		return metricnames.ReasonNoTokens
	case pb.RejectReason_REJECT_REASON_FAILED_CLOSED:
		return metricnames.ReasonFailedClosed
	case pb.RejectReason_REJECT_REASON_BREAKER_OPEN:
		return metricnames.ReasonBreakerOpen
	case pb.RejectReason_REJECT_REASON_NO_MATCHING_RAMP:
		return metricnames.ReasonNoMatchingRamp
	}
	return "unknown"
}
