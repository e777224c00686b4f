package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/testbin"
)

// echoOwner is a Session's owner as a loop would be, run by one goroutine:
// each request is answered once its body is in, with "hello" and the
// request's method, path and body length in fields; answers wait in
// pending for the client's windows.
type echoOwner struct {
	ss      *Session
	pending map[*SessionStream][]byte
	body    map[*SessionStream]int
	resets  int
}

// newEchoOwner is an echoOwner with a Session of s.
func newEchoOwner(s *Server) *echoOwner {
	o := &echoOwner{pending: map[*SessionStream][]byte{}, body: map[*SessionStream]int{}}
	o.ss = s.NewSession(o)
	return o
}

func (o *echoOwner) Request(st *SessionStream, req *SessionRequest) {
	st.Value = req.Method + " " + req.Authority + req.Path
	if req.End && !strings.HasPrefix(req.Path, "/hold") {
		o.answer(st)
	}
}

func (o *echoOwner) Data(st *SessionStream, p []byte, end bool) {
	o.body[st] += len(p)
	o.ss.Consumed(st, len(p))
	if end && !strings.Contains(st.Value.(string), "/hold") {
		o.answer(st)
	}
}

func (o *echoOwner) Reset(st *SessionStream) {
	o.resets++
	delete(o.pending, st)
	delete(o.body, st)
	o.ss.Close(st)
}

func (o *echoOwner) Writable() {
	for st, p := range o.pending {
		o.write(st, p)
	}
}

func (o *echoOwner) answer(st *SessionStream) {
	body := []byte("hello")
	o.ss.WriteHeaders(st, http.StatusOK, []hpack.HeaderField{
		{Name: "content-type", Value: "text/plain"},
		{Name: "content-length", Value: strconv.Itoa(len(body))},
		{Name: "x-request", Value: st.Value.(string)},
		{Name: "x-body", Value: strconv.Itoa(o.body[st])},
		{Name: "connection", Value: "keep-alive"}, // dropped: connection-specific
	}, false)
	delete(o.body, st)
	o.write(st, body)
}

func (o *echoOwner) write(st *SessionStream, p []byte) {
	n := o.ss.WriteData(st, p, true)
	if n < len(p) {
		o.pending[st] = p[n:]
		return
	}
	delete(o.pending, st)
	o.ss.Close(st)
}

// serveSession drives a Session on c from one goroutine, as a loop
// would: read, Feed, write Output; it returns when the connection ends.
func serveSession(s *Server, c net.Conn) *echoOwner {
	o := newEchoOwner(s)
	buf := make([]byte, 0, 64<<10)
	flush := func() bool {
		if out := o.ss.Output(); len(out) > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Write(out)
			o.ss.Wrote(n)
			return err == nil
		}
		return true
	}
	defer func() { _ = c.Close() }()
	for flush() && !o.ss.Ended() {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		k, ferr := o.ss.Feed(time.Now(), buf)
		buf = buf[:copy(buf, buf[k:])]
		if err != nil || ferr != nil {
			flush()
			break
		}
		if len(buf) == cap(buf) { // a frame larger than the buffer: grow it
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
	}
	return o
}

// startSessions serves Sessions of s over TLS (ALPN h2) on a free
// loopback port until the test ends; requests to /hold… are never
// answered. Only ts's addr, roots and ln are set.
func startSessions(t *testing.T, s *Server) *testServer {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err == nil {
					serveSession(s, tc)
				}
				_ = c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return &testServer{srv: s, addr: ln.Addr().String(), roots: roots, ln: ln}
}

// TestSessionH2spec runs every h2spec case against Sessions, as
// TestH2spec does against ServeConn.
func TestSessionH2spec(t *testing.T) {
	ts := startSessions(t, &Server{})
	if failed, _, out := testbin.H2spec(t, ts.addr, true); failed != 0 {
		t.Fatalf("h2spec: %d failed\n%s", failed, out)
	}
}

// TestSessionServesNetHTTPClients: net/http's HTTP/2 client, many streams
// on one connection at once, bodies larger than the windows both ways.
func TestSessionServesNetHTTPClients(t *testing.T) {
	ts := startSessions(t, &Server{StreamWindow: 64 << 10, ConnWindow: 128 << 10})
	addr := ts.addr
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.roots, MinVersion: tls.VersionTLS12},
		Protocols:       new(http.Protocols), HTTP2: &http.HTTP2Config{},
	}
	tr.Protocols.SetHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			size := i * 37 << 10 // up to 1.4 MiB: past the stream and connection windows
			req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/p/"+strconv.Itoa(i)+"?q=1", strings.NewReader(strings.Repeat("x", size)))
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			want := "POST " + addr + "/p/" + strconv.Itoa(i) + "?q=1"
			switch {
			case resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "hello":
				errs <- errors.New(resp.Proto + " " + resp.Status + " " + string(body))
			case resp.Header.Get("X-Request") != want:
				errs <- errors.New("X-Request " + resp.Header.Get("X-Request") + ", want " + want)
			case resp.Header.Get("X-Body") != strconv.Itoa(size):
				errs <- errors.New("X-Body " + resp.Header.Get("X-Body") + ", want " + strconv.Itoa(size))
			case resp.Header.Get("Connection") != "":
				errs <- errors.New("a connection-specific field went out")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSessionDefences: the bounds of doc.go hold on Sessions too.
func TestSessionDefences(t *testing.T) {
	t.Run("rapid reset", func(t *testing.T) {
		var rs reasons
		rc := dialRaw(t, startSessions(t, &Server{MaxResetsPerSecond: 10, OnProtocolError: rs.count}))
		for i := range 30 {
			id := uint32(2*i + 1)
			if rc.tryHeaders(id, true, ":path", "/hold") != nil || rc.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				break
			}
		}
		if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
		}
		rs.has(t, ReasonRapidReset)
	})
	t.Run("streams past the bound refused", func(t *testing.T) {
		var rs reasons
		rc := dialRaw(t, startSessions(t, &Server{MaxConcurrentStreams: 2, OnProtocolError: rs.count}))
		rc.headers(1, true, ":path", "/hold")
		rc.headers(3, true, ":path", "/hold")
		rc.headers(5, true, ":path", "/hold")
		if code := rc.rst(5); code != http2.ErrCodeRefusedStream {
			t.Fatalf("stream 5: %v, want REFUSED_STREAM", code)
		}
		rs.has(t, ReasonRefusedStream)
	})
	t.Run("continuation flood", func(t *testing.T) {
		var rs reasons
		rc := dialRaw(t, startSessions(t, &Server{OnProtocolError: rs.count}))
		block := rc.block()
		if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2], EndStream: true}); err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			if err := rc.fr.WriteContinuation(1, false, nil); err != nil {
				break
			}
		}
		if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
		}
		rs.has(t, ReasonContinuationFlood)
	})
	t.Run("header list too long", func(t *testing.T) {
		var rs reasons
		rc := dialRaw(t, startSessions(t, &Server{MaxHeaderListSize: 1 << 10, OnProtocolError: rs.count}))
		rc.headers(1, true, "x-big1", strings.Repeat("b", 500), "x-big2", strings.Repeat("b", 500), "x-big3", strings.Repeat("b", 500))
		if s := rc.status(1); s != "431" {
			t.Fatalf("status %s, want 431", s)
		}
		rs.has(t, ReasonHeaderListTooLong)
	})
	t.Run("content-length checked against DATA", func(t *testing.T) {
		rc := dialRaw(t, startSessions(t, &Server{}))
		rc.headers(1, false, ":method", "POST", "content-length", "3")
		if err := rc.fr.WriteData(1, true, []byte("four")); err != nil {
			t.Fatal(err)
		}
		if code := rc.rst(1); code != http2.ErrCodeProtocol {
			t.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", code)
		}
	})
	t.Run("DATA on a half-closed stream", func(t *testing.T) {
		rc := dialRaw(t, startSessions(t, &Server{}))
		rc.headers(1, true, ":path", "/hold")
		if err := rc.fr.WriteData(1, false, []byte("late")); err != nil {
			t.Fatal(err)
		}
		if code := rc.rst(1); code != http2.ErrCodeStreamClosed {
			t.Fatalf("RST_STREAM %v, want STREAM_CLOSED", code)
		}
	})
	ts := startSessions(t, &Server{})
	for _, tc := range malformedRequests {
		t.Run("malformed "+tc.name, func(t *testing.T) { tc.check(t, dialRaw(t, ts)) })
	}
}

// sessionInput is a client's side of a connection, frame by frame: the
// preface, SETTINGS, requests with and without bodies, a PING, window
// updates, a trailer block, a reset.
func sessionInput(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	rc := &rawClient{t: t, fr: http2.NewFramer(&b, nil)}
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	_ = rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 3})
	rc.headers(1, true, ":path", "/a", "x-one", "1")
	rc.headers(3, false, ":method", "POST", ":path", "/b", "content-length", "10")
	_ = rc.fr.WriteData(3, false, []byte("01234"))
	_ = rc.fr.WritePing(false, [8]byte{1, 2, 3})
	_ = rc.fr.WriteDataPadded(3, true, []byte("56789"), []byte{0, 0, 0})
	_ = rc.fr.WriteWindowUpdate(0, 1000)
	_ = rc.fr.WriteWindowUpdate(1, 1000)
	rc.headers(5, false, ":method", "PUT", ":path", "/c")
	_ = rc.fr.WriteData(5, false, []byte("x"))
	_ = rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, EndStream: true, EndHeaders: true})
	rc.headers(7, true, ":path", "/hold")
	_ = rc.fr.WriteRSTStream(7, http2.ErrCodeCancel)
	_ = rc.fr.WriteWindowUpdate(3, 1000)
	_ = rc.fr.WriteWindowUpdate(5, 1000)
	return b.Bytes()
}

// feedAll runs a Session over in, fed in pieces of at most step bytes,
// and returns everything it queued.
func feedAll(t *testing.T, in []byte, step int) []byte {
	o := newEchoOwner(&Server{})
	var out, buf []byte
	now := time.Unix(1, 0)
	for len(in) > 0 {
		k := min(step, len(in))
		buf = append(buf, in[:k]...)
		in = in[k:]
		n, err := o.ss.Feed(now, buf)
		if err != nil {
			t.Fatalf("Feed: %v", err)
		}
		buf = buf[:copy(buf, buf[n:])]
		out = append(out, o.ss.Output()...)
		o.ss.Wrote(len(o.ss.Output()))
	}
	if len(buf) > 0 {
		t.Fatalf("%d bytes never taken", len(buf))
	}
	if o.resets != 1 {
		t.Errorf("%d resets told, want 1 (stream 7)", o.resets)
	}
	return out
}

// TestSessionFeedInPieces: a Session answers the same, byte for byte,
// whether the client's bytes come whole or one at a time, and its answers
// wait for the client's windows (SETTINGS_INITIAL_WINDOW_SIZE 3).
func TestSessionFeedInPieces(t *testing.T) {
	in := sessionInput(t)
	whole := feedAll(t, in, len(in))
	for _, step := range []int{1, 2, 7, 9, 10, 100} {
		if got := feedAll(t, in, step); !bytes.Equal(got, whole) {
			t.Errorf("fed %d bytes at a time: %d bytes out, fed whole: %d", step, len(got), len(whole))
		}
	}
	fr := http2.NewFramer(nil, bytes.NewReader(whole))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var data = map[uint32]string{}
	var ended = map[uint32]bool{}
	var pings, acks int
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if _, seen := data[f.StreamID]; !seen && len(f.Data()) > 3 {
				t.Errorf("stream %d: first DATA of %d bytes past the client's window of 3", f.StreamID, len(f.Data()))
			}
			data[f.StreamID] += string(f.Data())
			ended[f.StreamID] = ended[f.StreamID] || f.StreamEnded()
		case *http2.PingFrame:
			pings++
		case *http2.SettingsFrame:
			if f.IsAck() {
				acks++
			}
		case *http2.MetaHeadersFrame:
			if id := f.StreamID; id == 3 && f.PseudoValue("status") != "200" {
				t.Errorf("stream 3: status %q", f.PseudoValue("status"))
			}
		}
	}
	if pings != 1 || acks != 1 {
		t.Errorf("%d PING and %d SETTINGS acks, want 1 and 1", pings, acks)
	}
	for _, id := range []uint32{1, 3, 5} {
		if data[id] != "hello" || !ended[id] {
			t.Errorf("stream %d: body %q ended %v, want hello and END_STREAM after the window updates", id, data[id], ended[id])
		}
	}
	if _, ok := data[7]; ok {
		t.Error("the reset stream 7 was answered")
	}
}

// FuzzSessionFeed: whatever follows the preface, a Session neither panics
// nor takes bytes it did not get, and what it queues is whole frames.
func FuzzSessionFeed(f *testing.F) {
	in := sessionInput(&testing.T{})
	f.Add(in[len(http2.ClientPreface):])
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		o := newEchoOwner(&Server{})
		buf := append([]byte(http2.ClientPreface), p...)
		n, _ := o.ss.Feed(time.Unix(1, 0), buf)
		if n > len(buf) {
			t.Fatalf("took %d of %d bytes", n, len(buf))
		}
		fr := http2.NewFramer(nil, bytes.NewReader(o.ss.Output()))
		for {
			if _, err := fr.ReadFrame(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("output not whole frames: %v", err)
				}
				break
			}
		}
	})
}

// BenchmarkSessionRequest is one request and its answer through a Session,
// as a loop runs them at one stream a connection: the HEADERS fed, the
// answer's HEADERS and DATA queued, the output taken.
func BenchmarkSessionRequest(b *testing.B) {
	var rs reasons
	o := newEchoOwner(&Server{OnProtocolError: rs.count})
	var in bytes.Buffer
	rc := &rawClient{t: &testing.T{}, fr: http2.NewFramer(&in, nil)}
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	in.WriteString(http2.ClientPreface)
	_ = rc.fr.WriteSettings()
	// The same head each time, as a client's HPACK state makes it after
	// the first request: indexed fields.
	fields := []string{":path", "/api/v1/items", "user-agent", "h2load nghttp2/1.64.0", "accept", "*/*"}
	rc.headers(1, true, fields...)
	_ = rc.fr.WriteWindowUpdate(0, 1<<31-1-65535) // answers never wait for the connection's window
	if _, err := o.ss.Feed(time.Unix(1, 0), in.Bytes()); err != nil {
		b.Fatal(err)
	}
	o.ss.Wrote(len(o.ss.Output()))
	in.Reset()
	rc.headers(3, true, fields...)
	frame := append([]byte(nil), in.Bytes()...)
	id := uint32(3)
	b.ReportAllocs()
	for b.Loop() {
		id += 2
		frame[5], frame[6], frame[7], frame[8] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
		if _, err := o.ss.Feed(time.Unix(1, 0), frame); err != nil {
			b.Fatal(err, id, rs.seen)
		}
		if len(o.ss.Output()) == 0 {
			b.Fatal("no answer")
		}
		o.ss.Wrote(len(o.ss.Output()))
	}
}
