package gateway

import (
	"net"
	"net/http"
	"net/textproto"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// request is what routing and the canary split read of a client request,
// whichever server engine received it (net/http or the fast HTTP/1.1
// engine). Strings it returns may alias the engine's buffers: compare
// them, do not keep them past the request.
type request interface {
	path() string
	host() string // the Host header, with any port
	header(name string) string
	cookie(name string) (string, bool)
	remoteAddr() string // host:port of the client connection
}

// netRequest is a request net/http received.
type netRequest struct{ r *http.Request }

func (n netRequest) path() string              { return n.r.URL.Path }
func (n netRequest) host() string              { return n.r.Host }
func (n netRequest) header(name string) string { return n.r.Header.Get(name) }
func (n netRequest) remoteAddr() string        { return n.r.RemoteAddr }

func (n netRequest) cookie(name string) (string, bool) {
	c, err := n.r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

// hostOnly is host without its port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// netExchange is a request the net/http engine checks at a control
// point: the flow, which holds the request and the answer's writer.
type netExchange proxied

var _ client.Exchange = (*netExchange)(nil)

func (x *netExchange) ResponseHeader() flow.HeaderSetter { return netHeader(x.rec.Header()) }

// netHeader is an answer's http.Header that sets the decision fields
// under their canonical keys, found in a table: flow's spelling
// (X-FluxGate-Decision) is not canonical, and http.Header.Set made the
// canonical key anew for every request (two allocations).
type netHeader http.Header

func (h netHeader) Set(name, value string) {
	if k, ok := canonicalDecisionKeys[name]; ok {
		name = k
	}
	http.Header(h).Set(name, value)
}

var canonicalDecisionKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{flow.HeaderDecision, flow.HeaderReason, flow.HeaderPolicy, flow.HeaderComponent} {
		m[k] = textproto.CanonicalMIMEHeaderKey(k)
	}
	return m
}()

func (x *netExchange) WriteJSON(status int, v any) { writeJSON(&x.rec, status, v) }

// reject answers as netResponder does, through the flow's writer.
func (x *netExchange) reject(status int, reason string, retryAfter int64, body any) {
	netResponder{&x.rec}.reject(status, reason, retryAfter, body)
}

func (x *netExchange) Identity() (method, path, target string) {
	return x.in.Method, x.in.URL.Path, x.in.URL.RequestURI()
}

// netLabels are the flow labels of r: flow.RequestLabels, plus the route,
// in a map of flow.NewLabels; give it back with flow.FreeLabels once the
// check is done (a Checker keeps none of its request).
func netLabels(r *http.Request, rt *route) map[string]string {
	labels := flow.AddRequestLabels(flow.NewLabels(), r)
	labels[LabelRouteID] = rt.id
	return labels
}
