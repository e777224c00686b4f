package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// The fast engine serves plain HTTP/1.1 clients on fasthttp, with pooled
// fasthttp clients to HTTP/1.1 upstreams: the same routing, control
// point, balancing, breakers, retries, canary split and metrics as the
// net/http engine (Gateway.ServeHTTP) at a fraction of the CPU, since it
// reuses request and response buffers instead of allocating them and
// hands a request to an upstream connection without goroutine switches.
//
// What it does not proxy itself it passes, in the same process, to the
// net/http engine: WebSocket and other Upgrade requests, and routes whose
// primary or canary group speaks HTTP/2 to its targets. The adaptor
// (fasthttpadaptor) buffers such a request's body before the hand-over.

// headerBuffer bounds the request and response headers the fast engine
// reads (fasthttp's read buffer; its default is 4 KB): large cookies and
// tokens fit, as they do behind nginx (4 × 8 KB).
const headerBuffer = 32 << 10

// NewFastServer returns a fasthttp server for g's fast engine on a plain
// listener. Serve it with Serve(FastListener(ln)); ShutdownWithContext
// lets requests in flight finish.
func (g *Gateway) NewFastServer(logger fasthttp.Logger) *fasthttp.Server {
	srv, _ := g.newFastServer(logger)
	return srv
}

// newFastServer is NewFastServer with the tracker of its connections.
func (g *Gateway) newFastServer(logger fasthttp.Logger) (*fasthttp.Server, *connTracker) {
	conns := &connTracker{conns: map[net.Conn]struct{}{}}
	return &fasthttp.Server{
		ConnState:                    conns.state,
		Handler:                      g.ServeFastHTTP,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		StreamRequestBody:            true, // large uploads go on as they arrive
		ReadBufferSize:               headerBuffer,
		ReadTimeout:                  10 * time.Second, // the request headers
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: g.opts.BodyReadTimeout}
		},
		IdleTimeout:                        2 * time.Minute,
		Concurrency:                        256 * 1024,
		CloseOnShutdown:                    true,
		SleepWhenConcurrencyLimitsExceeded: time.Second,
		Logger:                             logger,
	}, conns
}

// connTracker remembers a fast server's open connections, so that a stop
// whose grace period ran out can close them: fasthttp has no Close.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// state is fasthttp's ConnState hook, called at every request's start
// and end too (active, idle: they mark the connection's slot under the
// cap busy or idle): only a connection's first and last states take the
// lock.
func (t *connTracker) state(c net.Conn, s fasthttp.ConnState) {
	switch s {
	case fasthttp.StateActive:
		slotOf(c).Busy()
	case fasthttp.StateIdle:
		slotOf(c).Idle()
	case fasthttp.StateNew:
		t.mu.Lock()
		t.conns[c] = struct{}{}
		t.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}
}

// closeAll cuts every connection still open (closeNow: over TLS without
// a close_notify that could wait on a client that does not read).
func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		_ = closeNow(c)
	}
}

// ServeFastHTTP routes and proxies one request the fast engine received.
func (g *Gateway) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	// fasthttp does not recover a handler's panic: one bad request would
	// end the agent. Answer 500 and close the connection instead.
	defer func() {
		if p := recover(); p != nil {
			g.logger.Error("gateway handler panicked", "panic", p, "uri", string(ctx.RequestURI()))
			ctx.Response.Reset()
			ctx.SetConnectionClose()
			fastResponder{ctx: ctx}.json(http.StatusInternalServerError, map[string]string{"error": "internal"})
		}
	}()
	s := g.state.Load()
	fr := fastRequest{ctx}
	rt := s.route(fr)
	if rt == nil {
		fastResponder{ctx: ctx}.json(http.StatusNotFound, map[string]string{"error": "no_route"})
		return
	}
	if !rt.fast || ctx.Request.Header.ConnectionUpgrade() {
		g.netEngine(ctx)
		return
	}
	start := time.Now()
	method := methodString(ctx.Method())
	inflight := rt.series.started(method)
	handed := false
	defer func() {
		if !handed { // a panic was recovered
			inflight.Dec()
		}
	}()
	fl := &proxied{route: rt}
	finish := g.serveFastRoute(ctx, rt, fl, method)
	status := ctx.Response.StatusCode()
	done := func(failed, gone bool) {
		defer inflight.Dec()
		// When the relay calls done, fasthttp's writer or its context
		// reset would swallow a panic or end the process with it.
		defer func() {
			if p := recover(); p != nil {
				g.logger.Error("gateway request bookkeeping panicked", "panic", p, "route", rt.id)
			}
		}()
		if finish != nil {
			finish(failed, gone)
		}
		hostLabel := ""
		if h := fl.host.Load(); h != nil {
			hostLabel = *h
		}
		rt.series.finished(hostLabel, method, status, time.Since(start))
	}
	handed = true
	if r, ok := ctx.Response.BodyStream().(*relay); ok {
		r.done = done // once the body has been relayed
	} else {
		done(false, false)
	}
}

// serveFastRoute checks the request at the route's control point, when
// the gateway has a checker, and forwards it if admitted. It returns what
// is left to do once the response body has been relayed, or nil.
func (g *Gateway) serveFastRoute(ctx *fasthttp.RequestCtx, rt *route, fl *proxied, method string) (finish func(failed, gone bool)) {
	if rt.gate == nil {
		return g.forwardFast(ctx, rt, fl, method, nil)
	}
	// Not ctx itself: fasthttp cancels every request's context when
	// shutdown begins, and requests in flight are to finish.
	a, ok := rt.gate.Admit(context.WithoutCancel(ctx), fastExchange{ctx}, fastLabels(ctx, rt, method), 0)
	if !ok {
		return nil
	}
	leave := g.forwardFast(ctx, rt, fl, method, a.Decision())
	return func(failed, gone bool) {
		if leave != nil {
			leave(failed, gone)
		}
		a.End(ctx.Response.StatusCode(), failed || gone)
	}
}

// fastExchange is a request the fast engine checks at a control point.
type fastExchange struct{ ctx *fasthttp.RequestCtx }

func (x fastExchange) ResponseHeader() flow.HeaderSetter { return &x.ctx.Response.Header }

func (x fastExchange) WriteJSON(status int, v any) { fastResponder{ctx: x.ctx}.json(status, v) }

// Identity reads the request's target before forwarding rewrites it.
func (x fastExchange) Identity() (method, path, target string) {
	target = string(x.ctx.Request.Header.RequestURI())
	path, _, _ = strings.Cut(target, "?")
	return methodString(x.ctx.Method()), path, target
}

// forwardFast sends the request to the route's upstream group through its
// breaker, with retries, and answers with the target's response. decided
// is the control point's decision, whose headers the answer carries.
// leave records the outcome with the group once the response body has
// been relayed; it is nil when the breaker turned the request away.
func (g *Gateway) forwardFast(ctx *fasthttp.RequestCtx, rt *route, fl *proxied, method string, decided *flow.Decision) (leave func(failed, gone bool)) {
	u := rt.choose(fastRequest{ctx})
	fl.upstream = u
	rs := fastResponder{ctx: ctx, decided: decided}
	permit, ok := u.enter(rs, wallClock{})
	if !ok {
		return nil
	}
	start := time.Now()
	handed := false
	defer func() {
		if !handed { // a panic: the permit must not stay taken
			u.leave(rt, permit, start, wallClock{}, false, true)
		}
	}()
	req := &ctx.Request
	if c := clientConnOf(ctx.Conn()); c != nil {
		c.failed.Store(false) // from here on, a failed read is this request's body
	}
	var body *clientBody
	switch {
	case bodiless(req) && req.IsBodyStream():
		// The empty stream fasthttp gives a request without a body: gone,
		// the fast client may send the request again (retryStale), which
		// it never does with a stream.
		req.SetBodyRaw(nil)
	case req.IsBodyStream():
		body = newClientBody(req.BodyStream(), int64(req.Header.ContentLength()))
		req.SetBodyStream(body, req.Header.ContentLength())
	}
	clientGone := func() bool { return clientFailed(ctx) || body.failed() != nil }
	prepareOutbound(ctx)
	switch {
	case u.scheme == "https":
		req.URI().SetScheme("https") // the client of a TLS group checks it
	case ctx.IsTLS():
		req.URI().SetScheme("http") // came over TLS (handed over by the lean engine) to a plain group
	}
	up := fasthttp.AcquireResponse()
	err := g.try(u, fl, time.Time{}, retryable(method, bodiless(req)), clientGone,
		func(t *target, _ time.Time) (int, error) {
			if err := u.fast[t.addr].Do(req, up); err != nil {
				return 0, err
			}
			if body.failed() != nil {
				return 0, errClientBody // an answer to a body cut short
			}
			if up.StatusCode() == fasthttp.StatusSwitchingProtocols {
				return 0, errSwitching // fasthttp's client closes that connection
			}
			return up.StatusCode(), nil
		})
	switch {
	case err != nil && body.failed() != nil:
		fasthttp.ReleaseResponse(up)
		ctx.SetConnectionClose() // the rest of the body is not framed
		clientFault(rs, body.failed())
	case err != nil:
		fasthttp.ReleaseResponse(up)
		g.upstreamError(rs, fl, err)
	default:
		up.Header.CopyTo(&ctx.Response.Header)
		ctx.Response.Header.SetNoDefaultContentType(true) // CopyTo took up's setting
		if up.BodyStream() != nil {
			// A body that ends when the target closes (-2) goes out
			// chunked (-1): -2 would close the client's connection too.
			ctx.Response.SetBodyStream(&relay{up: up, h: &ctx.Response.Header}, max(up.Header.ContentLength(), -1))
		} else { // HEAD, 204, 304
			fasthttp.ReleaseResponse(up)
		}
		cleanInbound(&ctx.Response.Header)
		if decided != nil {
			flow.SetDecisionHeaders(&ctx.Response.Header, decided)
		}
	}
	// A client that stopped sending its body says nothing of the target.
	gone := err != nil && clientGone()
	failed := err != nil || ctx.Response.StatusCode() >= 500
	handed = true
	return func(bodyFailed, clientGone bool) {
		u.leave(rt, permit, start, wallClock{}, gone || clientGone, failed || bodyFailed)
	}
}

// relay is the body of a response being relayed from a target to the
// client. fasthttp writes it after the handler has returned and then
// closes it with the error that ended the writing, if any: only then is
// the request over, and done finishes its bookkeeping (the breaker, the
// canary, flows and metrics), as the net/http engine does once
// ReverseProxy has copied the body.
type relay struct {
	up     *fasthttp.Response       // holds the target's body stream
	h      *fasthttp.ResponseHeader // the client's
	failed bool                     // reading from the target failed
	eof    bool                     // the trailers have been passed on
	done   func(failed, gone bool)
}

func (r *relay) Read(p []byte) (int, error) {
	n, err := r.up.BodyStream().Read(p)
	switch {
	case err == io.EOF && !r.eof:
		// The target's trailers have arrived with the end of its body;
		// fasthttp writes the client's after reading this EOF.
		r.eof = true
		for _, k := range r.up.Header.PeekTrailerKeys() {
			if r.h.AddTrailerBytes(k) != nil {
				continue // a field not allowed in trailers
			}
			for _, v := range r.up.Header.PeekAllTrailer(b2s(k)) {
				r.h.AddBytesKV(k, v)
			}
		}
	case err != nil && err != io.EOF:
		r.failed = true
	}
	return n, err
}

// CloseWithError is called once the body has been written or writing
// it failed with err: on the target's side when a read failed, else on
// the client's. A body not read to its end closes the target's
// connection rather than pool it.
func (r *relay) CloseWithError(err error) error {
	if r.up == nil {
		return nil
	}
	fasthttp.ReleaseResponse(r.up)
	r.up = nil
	if r.done != nil {
		r.done(r.failed, err != nil && !r.failed)
	}
	return nil
}

// hopHeaders are the hop-by-hop headers a proxy does not forward (RFC
// 9110 section 7.6.1).
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// prepareOutbound turns the client's request into the upstream's: HTTP/1.1
// with keep-alive whatever the client spoke (the server remembered the
// client's own Connection: close before the handler ran), no hop-by-hop
// headers, X-Forwarded-For appended to the client's chain (all its
// lines), X-Forwarded-Host and -Proto set, the Host header kept.
func prepareOutbound(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	h.SetProtocol("HTTP/1.1")
	h.ResetConnectionClose()
	h.SetNoDefaultContentType(true) // a body without a Content-Type goes on without one
	dropHopHeaders(h.All(), h.Del, true)
	var xff []byte
	for _, prior := range h.PeekAll("X-Forwarded-For") {
		xff = append(append(xff, prior...), ", "...)
	}
	xff = appendIP(xff, ctx.RemoteIP())
	h.SetCanonical(headerXFF, xff)
	h.SetCanonical(headerXFHost, h.Host())
	if ctx.IsTLS() { // a TLS connection the lean engine handed over
		h.SetCanonical(headerXFProto, valueHTTPS)
	} else {
		h.SetCanonical(headerXFProto, valueHTTP)
	}
}

// appendIP appends ip's text form to dst.
func appendIP(dst []byte, ip net.IP) []byte {
	if ip.To4() != nil {
		return fasthttp.AppendIPv4(dst, ip)
	}
	return append(dst, ip.String()...)
}

var (
	headerXFF     = []byte("X-Forwarded-For")
	headerXFHost  = []byte("X-Forwarded-Host")
	headerXFProto = []byte("X-Forwarded-Proto")
	valueHTTP     = []byte("http")
	valueHTTPS    = []byte("https")
)

// cleanInbound drops the hop-by-hop headers of a target's response; the
// client's connection follows its own keep-alive.
func cleanInbound(h *fasthttp.ResponseHeader) {
	h.ResetConnectionClose()
	dropHopHeaders(h.All(), h.Del, false)
}

// requestOnly are the fields a client's request loses besides the
// hop-by-hop ones: Expect (the fast engine has answered it) and Forwarded
// (the gateway vouches for X-Forwarded-* only, as the net/http engine's
// ReverseProxy does; a target trusting a client's Forwarded would take
// its word for the client's address).
var requestOnly = [...]string{"Expect", "Forwarded"}

// indexFold is the index in names of name, compared case-insensitively,
// or -1.
func indexFold(names []string, name string) int {
	for i, n := range names {
		if len(n) == len(name) && strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// dropHopHeaders deletes, with del, the hop-by-hop headers among all and
// those their Connection header lists. A request also loses requestOnly's
// fields; Transfer-Encoding stays on a response, where fasthttp frames the
// body itself. One pass finds them, as most messages have none.
func dropHopHeaders(all iter.Seq2[[]byte, []byte], del func(string), request bool) {
	var found [len(hopHeaders) + len(requestOnly)]string
	n := 0
	var listed []string
	for k, v := range all {
		name := b2s(k)
		if request {
			if i := indexFold(requestOnly[:], name); i >= 0 {
				if !slices.Contains(found[:n], requestOnly[i]) {
					found[n], n = requestOnly[i], n+1
				}
				continue
			}
		}
		i := indexFold(hopHeaders[:], name)
		if i < 0 {
			continue
		}
		hop := hopHeaders[i]
		if !request && (hop == "Transfer-Encoding" || hop == "Trailer") {
			continue // fasthttp frames the body and its trailers itself
		}
		if hop == "Connection" { // every Connection line counts
			listed = connectionListed(listed, v)
		}
		if !slices.Contains(found[:n], hop) {
			found[n], n = hop, n+1
		}
	}
	for _, name := range listed {
		del(name)
	}
	for _, name := range found[:n] {
		del(name)
	}
}

// connectionListed appends to names the header names the Connection
// header value v lists, other than close and keep-alive (the engine's
// own) and the framing fields Content-Length, Transfer-Encoding and Host,
// which a proxy passes on whatever a Connection header says: without them
// the next hop would read a body as the next message, or route blind.
func connectionListed(names []string, v []byte) []string {
	for len(v) > 0 {
		var name []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			name, v = v[:i], v[i+1:]
		} else {
			name, v = v, nil
		}
		name = bytes.TrimSpace(name)
		switch n := b2s(name); {
		case n == "", strings.EqualFold(n, "close"), strings.EqualFold(n, "keep-alive"),
			strings.EqualFold(n, "Content-Length"), strings.EqualFold(n, "Transfer-Encoding"), strings.EqualFold(n, "Host"):
			continue
		}
		names = append(names, string(name))
	}
	return names
}

// fastLabels are the flow labels of a request: those
// flow.RequestLabels gives a net/http request, plus the route.
func fastLabels(ctx *fasthttp.RequestCtx, rt *route, method string) map[string]string {
	h := &ctx.Request.Header
	// Room for the headers and the 13 labels set below, so that the map
	// is made once and never grows.
	labels := make(map[string]string, h.Len()+13)
	for k, v := range h.All() {
		if strings.EqualFold(b2s(k), "Host") {
			continue // net/http keeps it out of the header too; it is http.host
		}
		// The name may be a view: the label's key never shares its memory.
		flow.AddHeaderLabel(labels, b2s(k), string(v))
	}
	scheme := "http"
	if ctx.IsTLS() { // a TLS connection the lean engine handed over
		scheme = "https"
	}
	flow.CompleteHTTPLabels(labels, method, string(h.RequestURI()), string(h.Host()), scheme)
	flow.SetClientAddress(labels, clientIP(ctx))
	labels[LabelRouteID] = rt.id
	return labels
}

// fastRequest is a request the fast engine received.
type fastRequest struct{ ctx *fasthttp.RequestCtx }

// path is the request's path as sent, percent-decoded, as net/http's
// URL.Path: routing sees the path the target gets (fasthttp's own Path
// also removes dot segments, which the request forwarded keeps).
func (f fastRequest) path() string {
	p := f.ctx.URI().PathOriginal()
	if bytes.IndexByte(p, '%') >= 0 {
		if d, err := url.PathUnescape(string(p)); err == nil {
			return d
		}
	}
	return b2s(p)
}

func (f fastRequest) host() string              { return b2s(f.ctx.Request.Header.Host()) }
func (f fastRequest) header(name string) string { return b2s(f.ctx.Request.Header.Peek(name)) }
func (f fastRequest) remoteAddr() string        { return f.ctx.RemoteAddr().String() }

func (f fastRequest) cookie(name string) (string, bool) {
	v := f.ctx.Request.Header.Cookie(name)
	return b2s(v), v != nil
}

// fastResponder answers through the fast engine.
type fastResponder struct {
	ctx     *fasthttp.RequestCtx
	decided *flow.Decision // the control point's decision, if any
}

func (f fastResponder) reject(status int, reason string, retryAfter int64, body any) {
	f.ctx.Response.Reset() // a failed attempt may have left a partial response
	h := &f.ctx.Response.Header
	if f.decided != nil {
		flow.SetDecisionHeaders(h, f.decided)
	}
	setReason(h, reason)
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	}
	f.json(status, body)
}

func (f fastResponder) json(status int, v any) {
	f.ctx.SetStatusCode(status)
	f.ctx.SetContentType("application/json")
	_ = json.NewEncoder(f.ctx).Encode(v)
}

// netEngine serves a request on the net/http engine, in process.
//
// The adaptor reads a request's whole body first: bodies above
// maxHandedBody are refused with 413, and one that fails to arrive gets
// 400 rather than reaching the target cut short. Its request's strings
// view fasthttp's buffers, which are reused once this handler returns (a
// hijacked WebSocket outlives it), so the net/http engine gets copies.
func (g *Gateway) netEngine(ctx *fasthttp.RequestCtx) {
	if ctx.Request.IsBodyStream() && !bodiless(&ctx.Request) {
		body, err := io.ReadAll(io.LimitReader(ctx.RequestBodyStream(), maxHandedBody+1))
		switch {
		case err != nil:
			ctx.SetConnectionClose()
			fastResponder{ctx: ctx}.json(http.StatusBadRequest, map[string]string{"error": "request_body_unreadable"})
			return
		case len(body) > maxHandedBody:
			ctx.SetConnectionClose()
			fastResponder{ctx: ctx}.json(http.StatusRequestEntityTooLarge, map[string]string{"error": "request_body_too_large"})
			return
		}
		ctx.Request.SetBodyRaw(body)
	}
	g.adapted(ctx)
}

// handedServer marks requests handed to the net/http engine as served by
// an http.Server (see detach); nothing else of it is used.
var handedServer = &http.Server{}

// maxHandedBody bounds the body of a request the fast engine hands to the
// net/http engine, which the adaptor holds in memory.
const maxHandedBody = 64 << 20

// detach returns r with its own copies of the strings fasthttpadaptor
// made as views of fasthttp's buffers, and a context that fasthttp's
// shutdown does not cancel (requests in flight are to finish).
func detach(r *http.Request) *http.Request {
	// ReverseProxy cuts the client's connection (an http.ErrAbortHandler
	// panic, which the adaptor turns into a cut) when a target's body
	// breaks off, but only for requests that carry http.ServerContextKey;
	// without it the client would get a short body as if complete.
	c := r.Clone(context.WithValue(context.WithoutCancel(r.Context()), http.ServerContextKey, handedServer))
	c.Method = strings.Clone(r.Method)
	c.Host = strings.Clone(r.Host)
	c.RequestURI = strings.Clone(r.RequestURI)
	c.RemoteAddr = strings.Clone(r.RemoteAddr)
	c.Proto = strings.Clone(r.Proto)
	if u, err := url.ParseRequestURI(c.RequestURI); err == nil {
		c.URL = u
	}
	h := make(http.Header, len(r.Header))
	for k, vs := range r.Header {
		cv := make([]string, len(vs))
		for i, v := range vs {
			cv[i] = strings.Clone(v)
		}
		h[strings.Clone(k)] = cv
	}
	c.Header = h
	return c
}

// clientSet holds an engine's pooled clients, one per target address
// and protocol: the fast engine's fasthttp clients, the lean engine's
// pools. They outlive routing snapshots so that a reload keeps
// connections warm.
type clientSet[C idleCloser] struct {
	mu sync.Mutex
	m  map[fastKey]C
}

type idleCloser interface{ CloseIdleConnections() }

// fastClients are the fast engine's clients.
type fastClients = clientSet[*fasthttp.HostClient]

type fastKey struct {
	addr string
	tls  bool
}

// get returns the client for k, making it with mk if there is none.
func (cs *clientSet[C]) get(k fastKey, mk func(fastKey) C) C {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.m[k]; ok {
		return c
	}
	if cs.m == nil {
		cs.m = map[fastKey]C{}
	}
	c := mk(k)
	cs.m[k] = c
	return c
}

// keepOnly closes the idle connections of clients not in keep and
// forgets them.
func (cs *clientSet[C]) keepOnly(keep map[fastKey]bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k, c := range cs.m {
		if !keep[k] {
			c.CloseIdleConnections()
			delete(cs.m, k)
		}
	}
}

func (cs *clientSet[C]) closeIdle() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.m {
		c.CloseIdleConnections()
	}
}

// newFastClient is the fast engine's client for one target.
func (g *Gateway) newFastClient(k fastKey) *fasthttp.HostClient {
	var tlsCfg *tls.Config // the dial does the handshake; see dialUpstream
	if k.tls {
		tlsCfg = g.opts.UpstreamTLSConfig.Clone()
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	return &fasthttp.HostClient{
		Addr:  k.addr,
		IsTLS: k.tls,
		// Each connection bounds the wait for a response's first bytes
		// (ResponseHeaderTimeout) and not the body, which may stream.
		// Before a pooled connection carries another request, a look at it
		// (upstreamConn.peek): bytes a target sent after its answer are
		// never another request's answer.
		Dial: func(addr string) (net.Conn, error) {
			c, err := g.dialUpstream(context.Background(), "tcp", addr, g.opts.ResponseHeaderTimeout, tlsCfg)
			if err != nil {
				return nil, err
			}
			switch uc := c.(type) {
			case *upstreamConn:
				uc.peek = newPeeker(uc)
			case tlsUpstreamConn:
				uc.peek = newPeeker(uc)
			}
			return c, nil
		},
		MaxConns:                      4096,
		ReadBufferSize:                headerBuffer,
		MaxConnWaitTimeout:            g.opts.DialTimeout,
		MaxIdleConnDuration:           90 * time.Second,
		NoDefaultUserAgentHeader:      true,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		StreamResponseBody:            true,
		MaxIdemponentCallAttempts:     2,
		RetryIfErr:                    retryStale,
	}
}

// retryStale lets the fast client send an idempotent request once more
// when a pooled connection turned out closed by the target (a keep-alive
// race), as net/http does; and any request without a body that found its
// connection dirty before a byte of it went out (errDirtyConn), as the
// lean pool skips such a connection. Other failures go to Gateway.try,
// which retries on another target within the retry budget.
func retryStale(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if errors.Is(err, errDirtyConn) && bodiless(req) {
		return false, true
	}
	stale := errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF)
	return false, stale && !isTimeout(err) && retryable(methodString(req.Header.Method()), bodiless(req))
}

// bodiless reports whether req has no body: no Content-Length or 0, not
// chunked. (With streaming on, fasthttp gives even an empty body a stream.)
func bodiless(req *fasthttp.Request) bool {
	cl := req.Header.ContentLength()
	return cl == 0 || cl == -2
}

// standardMethods are the methods methodString returns without allocating.
var standardMethods = [...]string{
	http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut,
	http.MethodDelete, http.MethodPatch, http.MethodOptions,
}

// methodString returns the method as a string without allocating for the
// standard ones.
func methodString(m []byte) string {
	for _, s := range standardMethods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// b2s views b as a string without copying; the string is valid while b
// is unchanged, within the request.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// FastListener wraps ln for the fast engine, which then tells a client
// that stopped sending its request body (a stalled or broken upload) from
// a failing target: only the latter counts against the target and its
// breaker. Without it, both count against the target.
func FastListener(ln net.Listener) net.Listener { return clientListener{ln} }

type clientListener struct{ net.Listener }

func (l clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &clientConn{Conn: c, ip: ipOf(c.RemoteAddr()), writeTimeout: leanWriteTimeout}, nil
}

// ipOf is an address's IP in text, or "" when it has none.
func ipOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return ""
}

// clientIP is the IP address of ctx's client in text, made once per
// connection on FastListener.
func clientIP(ctx *fasthttp.RequestCtx) string {
	if c := clientConnOf(ctx.Conn()); c != nil && c.ip != "" {
		return c.ip
	}
	return ctx.RemoteIP().String()
}

// clientConn is a client connection of the fast engine that remembers a
// failed read: while a request is proxied, the server reads from it only
// for the request's body. Each write gets writeTimeout (less up to
// leanDeadlineSlack, as the lean engine's): a client that stops reading
// its answer is cut off, and the target's connection it held is freed.
// fasthttp's own WriteTimeout would bound a whole answer, and cut long
// downloads.
type clientConn struct {
	net.Conn
	ip     string // the client's IP address in text
	failed atomic.Bool

	writeTimeout time.Duration // 0: none
	writeAt      time.Time     // when the write deadline was set; the writing goroutine's
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.writeTimeout > 0 {
		if now := time.Now(); now.Sub(c.writeAt) > leanDeadlineSlack {
			_ = c.Conn.SetWriteDeadline(now.Add(c.writeTimeout))
			c.writeAt = now
		}
	}
	return c.Conn.Write(p)
}

func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// clientFailed reports whether reading ctx's client failed since its
// request started being proxied.
func clientFailed(ctx *fasthttp.RequestCtx) bool {
	c := clientConnOf(ctx.Conn())
	return c != nil && c.failed.Load()
}

// clientConnOf is the clientConn under c, served directly or handed over
// by the lean engine, or nil.
func clientConnOf(c net.Conn) *clientConn {
	switch c := c.(type) {
	case *clientConn:
		return c
	case *handedConn:
		return c.clientConn
	case *tlsHandedConn:
		return c.clientConn
	}
	return nil
}
