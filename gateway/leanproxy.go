package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/internal/http1"
)

// serveLean checks the request lc holds at rt's control point and, if
// admitted, proxies it. It reports whether the connection can carry
// another request.
func (g *Gateway) serveLean(lc *leanConn, rt *route) bool {
	// One reading of the clock when the request starts, for every stamp
	// up to the first wait (as in ServeHTTP), and one when the answer has
	// been relayed (forwardLean's), for those at its end.
	start := time.Now()
	method := methodString(lc.req.Method)
	inflight := rt.series.started(method)
	defer inflight.Dec()
	lc.fl = proxied{route: rt} // the connection's own: one request at a time
	fl := &lc.fl
	keep := true
	if rt.gate == nil {
		_, _, keep = g.forwardLean(lc, rt, fl, method, start)
	} else {
		a, ok, now := g.admitAt(context.Background(), rt, start, leanExchange{lc}, leanLabels(lc, rt, method))
		if ok {
			var failed, gone bool
			failed, gone, keep = g.forwardLean(lc, rt, fl, method, now)
			if fl.end.IsZero() {
				fl.end = time.Now()
			}
			a.EndAt(fl.end, lc.status, failed || gone)
		}
	}
	end := fl.end // one reading for the flow's end and the request's
	if end.IsZero() {
		end = time.Now()
	}
	lc.ended = end // the last piece of the answer goes out next (flush)
	hostLabel := ""
	if h := fl.host.Load(); h != nil {
		hostLabel = *h
	}
	rt.series.finished(hostLabel, method, lc.status, end.Sub(start))
	return keep
}

// forwardLean sends the request to the route's upstream group through its
// breaker, with retries, and relays the target's answer. failed: the
// target's body broke off; gone: the client left while it was relayed;
// keep: the client's connection can carry another request. now is the
// clock's reading once the request was admitted, with no wait since
// (zero: none). Once the answer is relayed it reads the clock into
// fl.end, for the breaker's record and the caller's.
func (g *Gateway) forwardLean(lc *leanConn, rt *route, fl *proxied, method string, now time.Time) (failed, gone, keep bool) {
	u := rt.choose(leanRequest{lc})
	fl.upstream = u
	rs := (*leanRejecter)(lc) // a pointer: no allocation as a responder
	if now.IsZero() {
		now = time.Now()
	}
	fl.now = now
	permit, ok := u.enter(rs, (*flowClock)(fl))
	if !ok {
		return false, false, true
	}
	start := now
	left := false
	defer func() {
		if !left { // a panic: the permit must not stay taken
			u.leave(rt, permit, start, wallClock{}, false, true)
		}
	}()
	headReq := method == http.MethodHead
	again := retryable(method, lc.body == nil)
	msg := lc.outbound()
	var up *leanUpConn
	var pool *leanPool
	err := g.try(u, fl, now, again, func() bool { return false }, func(t *target, start time.Time) (int, error) {
		pool = u.lean[t.addr]
		var err error
		up, err = pool.roundTrip(context.Background(), start, msg, headReq, again, nil)
		if err != nil {
			return 0, err
		}
		return up.resp.Status, nil
	})
	if err != nil {
		g.upstreamError(rs, fl, err)
		left = true
		u.leave(rt, permit, start, wallClock{}, false, true)
		return false, false, true
	}
	bodyFailed, clientGone := lc.relay(pool, up, headReq)
	left = true
	fl.end = time.Now()
	fl.now = fl.end
	u.leave(rt, permit, start, (*flowClock)(fl), clientGone, bodyFailed || lc.status >= 500)
	return bodyFailed, clientGone, !bodyFailed && !clientGone
}

// outbound writes the request for the target into lc.out and returns it:
// the head as the client sent it but HTTP/1.1, without hop-by-hop fields
// (and those its Connection field lists), X-Forwarded-For appended to the
// client's chain, X-Forwarded-Host and -Proto set; then the body.
func (lc *leanConn) outbound() []byte {
	req := &lc.req
	out := append(lc.out[:0], req.Method...)
	out = append(out, ' ')
	out = append(out, req.Target...)
	out = append(out, " HTTP/1.1\r\n"...)
	listed := connectionFields(req.Headers)
	var xff []byte
	for _, h := range req.Headers {
		switch requestKind(h.Name) {
		case fieldHop, fieldXFHost, fieldXFProto:
			continue
		case fieldXFF:
			xff = append(append(xff, h.Value...), ", "...)
			continue
		}
		if listed != nil && listedIn(listed, h.Name) {
			continue
		}
		out = appendField(out, h.Name, h.Value)
	}
	out = append(out, "X-Forwarded-For: "...)
	out = append(out, xff...)
	out = append(out, lc.c.ip...)
	out = append(out, "\r\nX-Forwarded-Host: "...)
	out = append(out, req.Host...)
	out = append(out, "\r\nX-Forwarded-Proto: "...)
	out = append(out, lc.s.proto...)
	out = append(out, "\r\n\r\n"...)
	out = append(out, lc.body...)
	lc.out = out
	return out
}

func appendField(out, name, value []byte) []byte {
	out = append(out, name...)
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, "\r\n"...)
}

// Kinds of header fields the lean engine treats specially.
const (
	fieldOther    = iota
	fieldHop      // hop-by-hop: not forwarded (RFC 9110 section 7.6.1)
	fieldTE       // Transfer-Encoding: hop-by-hop, but a relayed chunked body keeps it
	fieldTrailer  // Trailer: likewise
	fieldXFF      // X-Forwarded-For
	fieldXFHost   // X-Forwarded-Host
	fieldXFProto  // X-Forwarded-Proto
	fieldConn     // Connection (also hop-by-hop)
	fieldHostName // Host
	fieldFwd      // Forwarded: a client's is dropped (requestKind), as the net/http engine's ReverseProxy drops it
)

// fieldKind classifies a field name, case-insensitively; the length
// decides which names are compared at all.
func fieldKind(name []byte) int {
	n := b2s(name)
	switch len(n) {
	case 2:
		if strings.EqualFold(n, "Te") {
			return fieldHop
		}
	case 4:
		if strings.EqualFold(n, "Host") {
			return fieldHostName
		}
	case 7:
		switch {
		case strings.EqualFold(n, "Upgrade"):
			return fieldHop
		case strings.EqualFold(n, "Trailer"):
			return fieldTrailer
		}
	case 9:
		if strings.EqualFold(n, "Forwarded") {
			return fieldFwd
		}
	case 10:
		switch {
		case strings.EqualFold(n, "Connection"):
			return fieldConn
		case strings.EqualFold(n, "Keep-Alive"):
			return fieldHop
		}
	case 15:
		if strings.EqualFold(n, "X-Forwarded-For") {
			return fieldXFF
		}
	case 16:
		switch {
		case strings.EqualFold(n, "Proxy-Connection"):
			return fieldHop
		case strings.EqualFold(n, "X-Forwarded-Host"):
			return fieldXFHost
		}
	case 17:
		switch {
		case strings.EqualFold(n, "Transfer-Encoding"):
			return fieldTE
		case strings.EqualFold(n, "X-Forwarded-Proto"):
			return fieldXFProto
		}
	case 18:
		if strings.EqualFold(n, "Proxy-Authenticate") {
			return fieldHop
		}
	case 19:
		if strings.EqualFold(n, "Proxy-Authorization") {
			return fieldHop
		}
	}
	return fieldOther
}

// requestKind is fieldKind for a request's fields: Connection,
// Transfer-Encoding and Trailer are plain hop-by-hop there (the lean
// engine forwards no chunked request body), and so is Forwarded: the
// gateway vouches for X-Forwarded-* only, and a target that trusted a
// client's Forwarded field would take its word for the client's address.
func requestKind(name []byte) int {
	switch k := fieldKind(name); k {
	case fieldConn, fieldTE, fieldTrailer, fieldFwd:
		return fieldHop
	default:
		return k
	}
}

// connectionFields returns the names the Connection fields of hs list
// (see connectionListed: never the framing fields), or nil when there are
// none or they list only close and keep-alive.
func connectionFields(hs []http1.Header) []string {
	var listed []string
	for _, h := range hs {
		if fieldKind(h.Name) == fieldConn {
			listed = connectionListed(listed, h.Value)
		}
	}
	return listed
}

func listedIn(listed []string, name []byte) bool {
	for _, l := range listed {
		if strings.EqualFold(l, b2s(name)) {
			return true
		}
	}
	return false
}

// relay writes the target's response, whose head up has read, to the
// client: its head without hop-by-hop fields, with the fields lc.hdr
// holds (the decision), then its body as it comes. A body that ends when
// the target closes goes out chunked. The last piece is left in
// lc.pending, so that the request's bookkeeping is done before the
// client sees its end; up is released once that piece is written
// (leanConn.flush): back to pool when its response was read to its end
// and it may be reused.
func (lc *leanConn) relay(pool *leanPool, up *leanUpConn, headReq bool) (bodyFailed, clientGone bool) {
	lc.up, lc.pool, lc.upReusable = up, pool, false // released by flush, even after a panic
	resp := &up.resp
	length := resp.BodyLength(headReq)
	out := lc.responseHead(resp, length)
	lc.upReusable = !resp.Close && length != http1.BodyToClose
	if length != http1.BodyNone && len(up.buf) < headerBuffer {
		nb := make([]byte, headerBuffer) // bodies are read in large pieces
		up.w = copy(nb, up.buf[up.r:up.w])
		up.r, up.buf = 0, nb
	}
	switch {
	case length == http1.BodyNone:
		lc.pending = out
	case length > 0:
		bodyFailed, clientGone = lc.relayLength(up, out, length)
	case length == http1.BodyChunked:
		bodyFailed, clientGone = lc.relayChunked(up, out)
	default:
		bodyFailed, clientGone = lc.relayToClose(up, out)
	}
	if bodyFailed || clientGone || up.r != up.w {
		lc.upReusable = false
	}
	return bodyFailed, clientGone
}

// responseHead writes into lc.out the head relayed to the client for
// resp, whose body is of length (http1.Response.BodyLength), and returns
// it: the target's fields without hop-by-hop ones, the fields lc.hdr
// holds, Transfer-Encoding: chunked for a body that ends with the
// connection, and Connection: close when the client's connection closes
// after it (lc.req.Close is set then). It sets lc.status.
func (lc *leanConn) responseHead(resp *http1.Response, length int64) []byte {
	lc.status = resp.Status
	out := append(lc.out[:0], "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(resp.Status), 10)
	out = append(out, ' ')
	out = append(out, resp.Reason...)
	out = append(out, "\r\n"...)
	listed := connectionFields(resp.Headers)
	for _, h := range resp.Headers {
		switch fieldKind(h.Name) {
		case fieldHop, fieldConn:
			continue
		}
		if listed != nil && listedIn(listed, h.Name) || lc.hdr.has(h.Name) {
			continue
		}
		out = appendField(out, h.Name, h.Value)
	}
	out = lc.hdr.appendTo(out)
	if length == http1.BodyToClose {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if lc.req.Close || lc.s.shutting.Load() {
		out = append(out, "Connection: close\r\n"...)
		lc.req.Close = true
	}
	out = append(out, "\r\n"...)
	lc.out = out
	return out
}

// flush writes what is pending to the client and releases the target's
// connection the request used. It reports whether the client is gone.
//
// The write's deadline is stamped with the request's end (lc.ended), read
// just before with no wait since; once written, one reading of the clock
// stamps the target's connection idle in its pool and, read by waitHead,
// the client's connection idle (lc.flushed).
func (lc *leanConn) flush() (gone bool) {
	ended := lc.ended
	lc.ended = time.Time{}
	if lc.pending != nil {
		gone = lc.writeStamped(lc.pending, ended)
		lc.pending = nil
	}
	if lc.up != nil {
		if lc.upReusable && !gone {
			lc.flushed = time.Now()
			lc.pool.putAt(lc.up, lc.flushed)
		} else {
			lc.pool.discard(lc.up)
		}
		lc.up, lc.pool = nil, nil
	}
	return gone
}

// write writes p to the client; it reports whether the client is gone.
// Each write has at least writeTimeout less leanDeadlineSlack to make
// its way: the deadline is moved on only when it is more than that old,
// so that most writes cost no timer update.
func (lc *leanConn) write(p []byte) (gone bool) { return lc.writeStamped(p, time.Time{}) }

// writeStamped is write with now, the caller's reading of the clock with
// no wait since (zero: none), for the deadline.
func (lc *leanConn) writeStamped(p []byte, now time.Time) (gone bool) {
	lc.wrote = true
	if now.IsZero() {
		now = time.Now()
	}
	if now.Sub(lc.writeAt) > leanDeadlineSlack {
		_ = lc.c.SetWriteDeadline(now.Add(lc.s.writeTimeout))
		lc.writeAt = now
	}
	if _, err := lc.c.Conn.Write(p); err != nil {
		lc.writeFailed = true
		return true
	}
	return false
}

// relayLength relays a body of length bytes after head.
func (lc *leanConn) relayLength(up *leanUpConn, head []byte, length int64) (bodyFailed, clientGone bool) {
	take := min(int64(up.w-up.r), length)
	out := append(head, up.buf[up.r:up.r+int(take)]...)
	lc.out = out
	up.r += int(take)
	length -= take
	if length > 0 {
		up.disarm()
	}
	for length > 0 {
		if lc.write(out) {
			return false, true
		}
		// A whole buffer, not just what is left: bytes past the end
		// stay unread (up.r < up.w), and the connection is not reused.
		// Read to the length only, they could wait in a TLS
		// connection's buffer, where nothing sees them, and be taken
		// for the next request's answer.
		n, err := up.c.Read(up.buf)
		take := min(int64(n), length)
		up.r, up.w = int(take), n
		out = up.buf[:take]
		length -= take
		if err != nil && length > 0 {
			if n > 0 && lc.write(out) {
				return true, true
			}
			return true, false
		}
	}
	lc.pending = out
	return false, false
}

// relayChunked relays a chunked body, framing and trailers as they are.
func (lc *leanConn) relayChunked(up *leanUpConn, head []byte) (bodyFailed, clientGone bool) {
	var ch http1.Chunked
	n, done, err := ch.Scan(up.buf[up.r:up.w])
	if err != nil {
		return true, false
	}
	out := append(head, up.buf[up.r:up.r+n]...)
	lc.out = out
	up.r += n
	if !done {
		up.disarm()
	}
	for !done {
		if lc.write(out) {
			return false, true
		}
		up.r, up.w = 0, 0
		m, rerr := up.c.Read(up.buf)
		n, done, err = ch.Scan(up.buf[:m])
		if err != nil {
			return true, false
		}
		up.r, up.w = n, m
		out = up.buf[:n]
		if rerr != nil && !done {
			if n > 0 && lc.write(out) {
				return true, true
			}
			return true, false
		}
	}
	lc.pending = out
	return false, false
}

// relayToClose relays a body that ends when the target closes, chunked.
func (lc *leanConn) relayToClose(up *leanUpConn, head []byte) (bodyFailed, clientGone bool) {
	out := head
	if up.r < up.w {
		out = appendChunk(out, up.buf[up.r:up.w])
		up.r = up.w
	}
	up.disarm()
	for {
		lc.out = out
		n, err := up.c.Read(up.buf)
		if n > 0 {
			if lc.write(out) {
				return false, true
			}
			out = appendChunk(lc.out[:0], up.buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				if lc.write(out) {
					return true, true
				}
				return true, false
			}
			lc.out = append(out, "0\r\n\r\n"...)
			lc.pending = lc.out
			return false, false
		}
	}
}

func appendChunk(out, data []byte) []byte {
	out = strconv.AppendInt(out, int64(len(data)), 16)
	out = append(out, "\r\n"...)
	out = append(out, data...)
	return append(out, "\r\n"...)
}

// leanRequest is a request the lean engine received.
type leanRequest struct{ lc *leanConn }

// path is the request's path as sent, percent-decoded, as net/http's
// URL.Path (see fastRequest.path).
func (l leanRequest) path() string {
	p := l.lc.req.Target
	if i := indexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if indexByte(p, '%') >= 0 {
		if d, err := url.PathUnescape(string(p)); err == nil {
			return d
		}
	}
	return b2s(p)
}

func (l leanRequest) host() string       { return b2s(l.lc.req.Host) }
func (l leanRequest) remoteAddr() string { return l.lc.c.RemoteAddr().String() }

func (l leanRequest) header(name string) string {
	for _, h := range l.lc.req.Headers {
		if strings.EqualFold(b2s(h.Name), name) {
			return b2s(h.Value)
		}
	}
	return ""
}

// cookie finds a cookie in the Cookie fields, as net/http's Cookie does:
// pairs it cannot read are skipped, a quoted value is unquoted.
func (l leanRequest) cookie(name string) (string, bool) {
	for _, h := range l.lc.req.Headers {
		if !strings.EqualFold(b2s(h.Name), "Cookie") {
			continue
		}
		for part := range strings.SplitSeq(b2s(h.Value), ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

func indexByte(b []byte, c byte) int { return strings.IndexByte(b2s(b), c) }

// leanLabels are the flow labels of the request lc holds: those
// flow.RequestLabels gives a net/http request, plus the route. The map is
// the connection's, cleared and filled again for each request: a Checker
// keeps no part of its request after Check (client.Checker), so it need
// not be made anew, which was most of what a request allocated.
func leanLabels(lc *leanConn, rt *route, method string) map[string]string {
	req := &lc.req
	labels := lc.labels
	if labels == nil || len(labels) > flow.KeepLabels {
		labels = make(map[string]string, len(req.Headers)+13)
		lc.labels = labels
	} else {
		clear(labels)
	}
	hs := newHeadStrings(lc.buf[lc.r:lc.reqEnd], req)
	for _, h := range req.Headers {
		if fieldKind(h.Name) == fieldHostName {
			continue // it is http.host
		}
		flow.AddHeaderLabel(labels, b2s(h.Name), hs.of(h.Value))
	}
	lc.target = hs.of(req.Target)
	flow.CompleteHTTPLabels(labels, method, lc.target, hs.of(req.Host), lc.s.proto)
	flow.SetClientAddress(labels, lc.c.ip)
	labels[LabelRouteID] = rt.id
	return labels
}

// headStrings gives the labels strings of a request head's fields that
// share one copy of the head: one allocation a request, not one a field.
type headStrings struct {
	head []byte // the request as read: the fields are views of it
	s    string // a copy of head up to the last field's end
}

func newHeadStrings(head []byte, req *http1.Request) headStrings {
	end := 0
	for _, v := range [2][]byte{req.Target, req.Host} {
		end = max(end, viewEnd(head, v))
	}
	// The last field with a value in the head: an empty value (X-A: )
	// is no view, and stopping at it left the fields before it to copies
	// of their own.
	for i := len(req.Headers) - 1; i >= 0; i-- {
		if e := viewEnd(head, req.Headers[i].Value); e > 0 {
			end = max(end, e)
			break
		}
	}
	return headStrings{head: head, s: string(head[:end])}
}

// viewEnd is where v ends in head, or 0 when v is not a view of head.
func viewEnd(head, v []byte) int {
	if off := viewAt(head, v); off >= 0 {
		return off + len(v)
	}
	return 0
}

// viewAt is where v starts in head, or -1 when v is empty or not a view
// of head.
func viewAt(head, v []byte) int {
	off := cap(head) - cap(v)
	if len(v) == 0 || off < 0 || off+len(v) > len(head) || &head[off] != &v[0] {
		return -1
	}
	return off
}

// of returns v as a string: a part of the copy when v is a view of the
// head within it, else a copy of its own.
func (h *headStrings) of(v []byte) string {
	if off := viewAt(h.head, v); off >= 0 && off+len(v) <= len(h.s) {
		return h.s[off : off+len(v)]
	}
	return string(v)
}

// leanExchange is a request the lean engine checks at a control point.
type leanExchange struct{ lc *leanConn }

var _ client.Exchange = leanExchange{}

func (x leanExchange) ResponseHeader() flow.HeaderSetter { return &x.lc.hdr }

func (x leanExchange) WriteJSON(status int, v any) {
	leanResponder{lc: x.lc, close: x.lc.req.Close}.json(status, v)
}

// Identity's target is the one leanLabels made for the flow labels (Admit
// asks after them): no copy of its own.
func (x leanExchange) Identity() (method, path, target string) {
	target = x.lc.target
	path, _, _ = strings.Cut(target, "?")
	return methodString(x.lc.req.Method), path, target
}

// leanResponder answers through the lean engine.
type leanResponder struct {
	lc    *leanConn
	close bool // with Connection: close
}

// leanRejecter is a leanConn answering a rejection as leanResponder does,
// with the request's own keep-alive.
type leanRejecter leanConn

func (r *leanRejecter) reject(status int, reason string, retryAfter int64, body any) {
	lc := (*leanConn)(r)
	leanResponder{lc: lc, close: lc.req.Close}.reject(status, reason, retryAfter, body)
}

func (r leanResponder) reject(status int, reason string, retryAfter int64, body any) {
	setReason(&r.lc.hdr, reason)
	if retryAfter > 0 {
		r.lc.hdr.Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	}
	r.json(status, body)
}

// json answers status with v as a JSON body (none to HEAD; its length
// is given) and the fields of lc.hdr, pending (see leanConn.flush).
func (r leanResponder) json(status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"error":"internal"}`)
		status = http.StatusInternalServerError
	}
	out := fmt.Appendf(r.lc.out[:0], "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
		status, http.StatusText(status), len(body)+1)
	out = r.lc.hdr.appendTo(out)
	if r.close || r.lc.s.shutting.Load() {
		out = append(out, "Connection: close\r\n"...)
		r.lc.req.Close = true
	}
	out = append(out, "\r\n"...)
	if string(r.lc.req.Method) != http.MethodHead { // an answer to HEAD is its head
		out = append(append(out, body...), '\n')
	}
	r.lc.out = out
	r.lc.pending = out
	r.lc.status = status
}

// leanHeaders are the response fields the gateway sets before a target
// answers: the control point's decision, a rejection's reason, the rate
// limiter's numbers.
type leanHeaders struct{ kv []leanField }

// leanField is a field with its value, or a whole number (isNum) written
// when the head is (flow.HeaderIntSetter): no string made for it.
type leanField struct {
	name, value string
	num         int64
	isNum       bool
}

var _ flow.HeaderIntSetter = (*leanHeaders)(nil)

// Set replaces name's value, or adds it.
func (h *leanHeaders) Set(name, value string) {
	h.set(leanField{name: name, value: value})
}

// SetInt replaces name's value with v, or adds it.
func (h *leanHeaders) SetInt(name string, v int64) {
	h.set(leanField{name: name, num: v, isNum: true})
}

func (h *leanHeaders) set(f leanField) {
	for i := range h.kv {
		if strings.EqualFold(h.kv[i].name, f.name) {
			h.kv[i] = f
			return
		}
	}
	h.kv = append(h.kv, f)
}

func (h *leanHeaders) reset() { h.kv = h.kv[:0] }

func (h *leanHeaders) has(name []byte) bool {
	for _, f := range h.kv {
		if strings.EqualFold(f.name, b2s(name)) {
			return true
		}
	}
	return false
}

func (h *leanHeaders) appendTo(out []byte) []byte {
	for _, f := range h.kv {
		out = append(out, f.name...)
		out = append(out, ": "...)
		if f.isNum {
			out = strconv.AppendInt(out, f.num, 10)
		} else {
			out = append(out, f.value...)
		}
		out = append(out, "\r\n"...)
	}
	return out
}
