package h2

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient speaks HTTP/2 frame by frame over TLS.
type rawClient struct {
	t    *testing.T
	c    interface{ SetReadDeadline(time.Time) error }
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

// dialRaw connects, sends the preface and empty SETTINGS.
func dialRaw(t *testing.T, ts *testServer) *rawClient {
	t.Helper()
	c := ts.rawConn(t)
	rc := &rawClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return rc
}

// block encodes a request's header block: GET / unless fields override.
func (rc *rawClient) block(fields ...string) []byte {
	rc.hbuf.Reset()
	base := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/"}}
	seen := map[string]bool{}
	for i := 0; i+1 < len(fields); i += 2 {
		seen[fields[i]] = true
	}
	for _, f := range base {
		if !seen[f[0]] {
			_ = rc.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "-" { // leave the field out
			continue
		}
		_ = rc.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), rc.hbuf.Bytes()...)
}

func (rc *rawClient) headers(id uint32, end bool, fields ...string) {
	rc.t.Helper()
	if err := rc.tryHeaders(id, end, fields...); err != nil {
		rc.t.Fatal(err)
	}
}

// tryHeaders is headers for a flood the server may cut at any frame.
func (rc *rawClient) tryHeaders(id uint32, end bool, fields ...string) error {
	return rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block(fields...), EndStream: end, EndHeaders: true})
}

// until reads frames until match returns true, the connection ends (it
// returns nil then) or 10 s pass.
func (rc *rawClient) until(match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatal("no frame matched in 10 s")
			}
			return nil
		}
		if match(f) {
			return f
		}
	}
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

// goAway reads until GOAWAY and returns its code; the connection must then end.
func (rc *rawClient) goAway() http2.ErrCode {
	rc.t.Helper()
	f := rc.until(isGoAway)
	if f == nil {
		rc.t.Fatal("connection ended without GOAWAY")
	}
	code := f.(*http2.GoAwayFrame).ErrCode
	if rc.until(func(http2.Frame) bool { return false }) != nil {
		rc.t.Fatal("unreachable")
	}
	return code
}

// rst reads until RST_STREAM on id and returns its code.
func (rc *rawClient) rst(id uint32) http2.ErrCode {
	rc.t.Helper()
	f := rc.until(func(f http2.Frame) bool { r, ok := f.(*http2.RSTStreamFrame); return ok && r.StreamID == id })
	if f == nil {
		rc.t.Fatalf("connection ended without RST_STREAM on %d", id)
	}
	return f.(*http2.RSTStreamFrame).ErrCode
}

// status reads until the HEADERS on id and returns its :status.
func (rc *rawClient) status(id uint32) string {
	rc.t.Helper()
	f := rc.until(func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == id })
	if f == nil {
		rc.t.Fatalf("connection ended without HEADERS on %d", id)
	}
	return f.(*http2.MetaHeadersFrame).PseudoValue("status")
}

// reasons collects what OnProtocolError reported.
type reasons struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *reasons) count(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[reason]++
}

func (r *reasons) has(t *testing.T, reason string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[reason] == 0 {
		t.Errorf("reason %s not reported; got %v", reason, r.seen)
	}
}

// blocking is a handler that waits for its request's end.
var blocking = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })

func TestRapidResetGoesAway(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: blocking, MaxResetsPerSecond: 10, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	for i := range 30 {
		id := uint32(2*i + 1)
		if rc.tryHeaders(id, true) != nil || rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break // the server may have closed already
		}
	}
	if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
	rs.has(t, ReasonRapidReset)
}

func TestHandlersInFlightBounded(t *testing.T) {
	var rs reasons
	release := make(chan struct{})
	defer close(release)
	// Handlers that outlive their stream's reset: the bound on handlers
	// running, not the resets a second, ends the connection.
	stubborn := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })
	ts := start(t, &Server{Handler: stubborn, MaxConcurrentStreams: 3, MaxResetsPerSecond: 1000, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	for i := range 10 {
		id := uint32(2*i + 1)
		if rc.tryHeaders(id, true) != nil || rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
	}
	if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
	rs.has(t, ReasonRapidReset)
}

func TestContinuationFloodCloses(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: blocking, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	block := rc.block()
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	for range 1000 { // empty CONTINUATIONs, each adding nothing to the header list
		if err := rc.fr.WriteContinuation(1, false, nil); err != nil {
			break
		}
	}
	if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
	rs.has(t, ReasonContinuationFlood)
}

func TestHeaderBlockPastTheListBoundCloses(t *testing.T) {
	ts := start(t, &Server{Handler: blocking, MaxHeaderListSize: 1 << 10})
	rc := dialRaw(t, ts)
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.block()}); err != nil {
		t.Fatal(err)
	}
	junk := rc.block("x-junk", strings.Repeat("a", 4000))
	for range 10 {
		if err := rc.fr.WriteContinuation(1, false, junk); err != nil {
			break
		}
	}
	if code := rc.goAway(); code != http2.ErrCodeProtocol && code != http2.ErrCodeCompression {
		t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", code)
	}
}

func TestHeaderListTooLong431(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: http.HandlerFunc(echo), MaxHeaderListSize: 1 << 10, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	rc.headers(1, true, "x-big1", strings.Repeat("b", 500), "x-big2", strings.Repeat("b", 500), "x-big3", strings.Repeat("b", 500))
	if s := rc.status(1); s != "431" {
		t.Fatalf("status %s, want 431", s)
	}
	rs.has(t, ReasonHeaderListTooLong)
}

func TestStreamsPastTheBoundRefused(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: blocking, MaxConcurrentStreams: 2, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	rc.headers(1, true)
	rc.headers(3, true)
	rc.headers(5, true)
	if code := rc.rst(5); code != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 5: %v, want REFUSED_STREAM", code)
	}
	rs.has(t, ReasonRefusedStream)
}

func TestBadPrefaceCloses(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: blocking, OnProtocolError: rs.count})
	c := ts.rawConn(t)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxx"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(io.Discard, c)
	var code http2.ErrCode = 255
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			code = g.ErrCode
		}
	}
	if code != http2.ErrCodeProtocol {
		t.Errorf("GOAWAY code %v, want PROTOCOL_ERROR before the close", code)
	}
	rs.has(t, ReasonBadPreface)
}

func TestMalformedRequestsReset(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(echo)})
	for _, tc := range malformedRequests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, dialRaw(t, ts)) })
	}
}

// malformedRequest is a request head a server must refuse.
type malformedRequest struct {
	name   string
	fields []string
	want   string // RST code, or :status
}

var malformedRequests = []malformedRequest{
	{"no :path", []string{":path", "-"}, "PROTOCOL_ERROR"},
	{"no :method", []string{":method", "-"}, "PROTOCOL_ERROR"},
	{"no :scheme", []string{":scheme", "-"}, "PROTOCOL_ERROR"},
	{"upper-case name", []string{"X-Upper", "1"}, "PROTOCOL_ERROR"},
	{"connection", []string{"connection", "keep-alive"}, "PROTOCOL_ERROR"},
	{"transfer-encoding", []string{"transfer-encoding", "chunked"}, "PROTOCOL_ERROR"},
	{"te gzip", []string{"te", "gzip"}, "PROTOCOL_ERROR"},
	{":status in a request", []string{":status", "200"}, "PROTOCOL_ERROR"},
	{":protocol", []string{":protocol", "websocket"}, "PROTOCOL_ERROR"},
	{"bad content-length", []string{"content-length", "x"}, "PROTOCOL_ERROR"},
	{"content-length without body", []string{"content-length", "5"}, "PROTOCOL_ERROR"},
	{"CONNECT", []string{":method", "CONNECT", ":scheme", "-", ":path", "-"}, "501"},
}

// check sends the head on stream 1 and expects the server's refusal.
func (tc malformedRequest) check(t *testing.T, rc *rawClient) {
	t.Helper()
	// Pseudo fields first: put overriding pseudo fields in the base.
	rc.hbuf.Reset()
	if tc.fields[0][0] == ':' && tc.fields[0] != ":status" && tc.fields[0] != ":protocol" {
		rc.headers(1, true, tc.fields...)
	} else {
		if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.block(tc.fields...), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	if tc.want == "501" {
		if s := rc.status(1); s != "501" {
			t.Fatalf("status %s, want 501", s)
		}
		return
	}
	if code := rc.rst(1); code.String() != tc.want {
		t.Fatalf("RST_STREAM %v, want %s", code, tc.want)
	}
}

func TestContentLengthCheckedAgainstData(t *testing.T) {
	got := make(chan error, 1)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
	})})
	rc := dialRaw(t, ts)
	rc.headers(1, false, ":method", "POST", "content-length", "3")
	if err := rc.fr.WriteData(1, true, []byte("four")); err != nil {
		t.Fatal(err)
	}
	if code := rc.rst(1); code != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", code)
	}
	if err := <-got; err == nil {
		t.Error("the handler read a body longer than its content-length without error")
	}
}

func TestIdleConnectionGoesAway(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: http.HandlerFunc(echo), IdleTimeout: 50 * time.Millisecond, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	rc.headers(1, true)
	if s := rc.status(1); s != "200" {
		t.Fatalf("status %s", s)
	}
	if code := rc.goAway(); code != http2.ErrCodeNo {
		t.Fatalf("GOAWAY %v, want NO_ERROR", code)
	}
	rs.has(t, ReasonIdleTimeout)
}

func TestBodyThatStopsArrivingTimesOut(t *testing.T) {
	var rs reasons
	readErr := make(chan error, 1)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	}), ReadTimeout: 50 * time.Millisecond, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	rc.headers(1, false, ":method", "POST")
	if err := rc.fr.WriteData(1, false, []byte("part")); err != nil {
		t.Fatal(err)
	}
	if f := rc.until(func(http2.Frame) bool { return false }); f != nil {
		t.Fatal("unreachable")
	}
	if err := <-readErr; err == nil {
		t.Error("the body read ended without error")
	}
	rs.has(t, ReasonReadTimeout)
}

func TestClientThatDoesNotReadIsCut(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: blocking, WriteTimeout: 100 * time.Millisecond, OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	// PINGs whose ACKs are never read: the server's writes block, time
	// out and end the connection, which makes these writes fail.
	var data [8]byte
	_ = rc.c.(interface{ SetWriteDeadline(time.Time) error }).SetWriteDeadline(time.Now().Add(30 * time.Second))
	var err error
	for err == nil {
		err = rc.fr.WritePing(false, data)
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server still takes PINGs from a client that reads nothing")
	}
	rs.has(t, ReasonWriteTimeout)
}

func TestDataOnHalfClosedStreamResetsIt(t *testing.T) {
	cancelled := make(chan struct{})
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(cancelled)
	})})
	rc := dialRaw(t, ts)
	rc.headers(1, true)
	if err := rc.fr.WriteData(1, false, []byte("late")); err != nil {
		t.Fatal(err)
	}
	if code := rc.rst(1); code != http2.ErrCodeStreamClosed {
		t.Fatalf("RST_STREAM %v, want STREAM_CLOSED", code)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler of the reset stream was not cancelled")
	}
}
