package gateway

import (
	"net"
	"net/http"
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
