package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// countingListener counts the connections accepted.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startH2lean serves mode on a free loopback port and returns its address,
// the roots that verify it and the listener (for its connection count).
func startH2lean(t *testing.T, mode, upstream string, inline bool) (string, *x509.CertPool, *countingListener) {
	t.Helper()
	certPEM, keyPEM, err := selfSignedPEM()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: raw}
	done := make(chan error, 1)
	go func() { done <- serve(ln, mode, upstream, inline, cert) }()
	t.Cleanup(func() {
		_ = ln.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return raw.Addr().String(), roots, ln
}

// h2Client is Go's HTTP/2 client, HTTP/2 only, which keeps one
// connection to a host and multiplexes every request on it.
func h2Client(t *testing.T, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// echoUpstream answers with the request's method, path, body and one of
// its fields, status 201 and a field of its own.
func echoUpstream(t *testing.T) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Connection", "keep-alive") // hop-by-hop: must not cross
		out := append(fmt.Appendf(nil, "%s %s host=%s x-test=%s len=%d\n", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Test"), len(b)), b...)
		// The spike relays Content-Length bodies only (not chunked ones).
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(out)
	}))
	t.Cleanup(up.Close)
	return strings.TrimPrefix(up.URL, "http://")
}

func modes(t *testing.T, fn func(t *testing.T, inline bool)) {
	for _, inline := range []bool{false, true} {
		t.Run(map[bool]string{false: "goroutine", true: "inline"}[inline], func(t *testing.T) { fn(t, inline) })
	}
}

func TestStaticGet(t *testing.T) {
	modes(t, func(t *testing.T, inline bool) {
		addr, roots, _ := startH2lean(t, "static", "", inline)
		resp, err := h2Client(t, roots).Get("https://" + addr + "/any")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !bytes.Equal(body, staticBody) || resp.ContentLength != 100 || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("got %s %d, content-length %d, %q: %q", resp.Proto, resp.StatusCode, resp.ContentLength, resp.Header, body)
		}
	})
}

// TestProxyPost sends bodies larger than HTTP/2's default 64 KiB window
// both ways through the proxy: the request's must fit the window the
// server announces, the answer's must wait for the client's
// WINDOW_UPDATEs.
func TestProxyPost(t *testing.T) {
	modes(t, func(t *testing.T, inline bool) {
		addr, roots, ln := startH2lean(t, "proxy", echoUpstream(t), inline)
		client := h2Client(t, roots)
		for _, size := range []int{0, 5, 300 << 10} {
			sent := bytes.Repeat([]byte("abcdefgh"), size/8+1)[:size]
			req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/p?q=1", bytes.NewReader(sent))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Test", "v")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			head := fmt.Sprintf("POST /p?q=1 host=%s x-test=v len=%d\n", addr, size)
			if resp.StatusCode != 201 || resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get("Connection") != "" ||
				!bytes.Equal(body, append([]byte(head), sent...)) {
				t.Fatalf("size %d: got %d %q, body of %d bytes starting %.80q", size, resp.StatusCode, resp.Header, len(body), body)
			}
		}
		if n := ln.n.Load(); n != 1 {
			t.Fatalf("%d connections, want the client's one", n)
		}
	})
}

// TestConcurrentStreams holds 10 requests at the upstream until all ten
// have arrived: they can only all succeed if one connection's streams run
// at the same time.
func TestConcurrentStreams(t *testing.T) {
	const n = 10
	var arrived atomic.Int32
	all := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return // the warm-up
		}
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			_, _ = io.WriteString(w, r.URL.Path)
		case <-time.After(10 * time.Second):
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	}))
	defer up.Close()
	addr, roots, ln := startH2lean(t, "proxy", strings.TrimPrefix(up.URL, "http://"), false)
	client := h2Client(t, roots)
	// One request first, so that the client has its connection before
	// the ten start (else each of them may dial one).
	if resp, err := client.Head("https://" + addr + "/"); err != nil {
		t.Fatal(err)
	} else {
		_ = resp.Body.Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			path := fmt.Sprintf("/s%d", i)
			resp, err := client.Get("https://" + addr + path)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != path {
				errs <- fmt.Errorf("%s: %d %q", path, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := ln.n.Load(); c != 1 {
		t.Fatalf("%d connections, want one for all %d streams", c, n)
	}
}

// rawConn is a TLS connection to the server driven frame by frame.
type rawConn struct {
	t    *testing.T
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRaw(t *testing.T, addr string, roots *x509.CertPool, settings ...http2.Setting) *rawConn {
	t.Helper()
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{t: t, fr: http2.NewFramer(tc, tc)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if err := rc.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return rc
}

// next reads frames until one for which want is true, and fails on a
// GOAWAY it did not want.
func (rc *rawConn) next(want func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.t.Fatal(err)
		}
		if want(f) {
			return f
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			rc.t.Fatalf("GOAWAY %v", ga.ErrCode)
		}
	}
}

// answer reads until the server answers a stream: a RST_STREAM or HEADERS.
func (rc *rawConn) answer() http2.Frame {
	return rc.next(func(f http2.Frame) bool {
		switch f.(type) {
		case *http2.RSTStreamFrame, *http2.MetaHeadersFrame:
			return true
		}
		return false
	})
}

func (rc *rawConn) headers(id uint32, method string, end bool) {
	rc.t.Helper()
	rc.hbuf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "x"}, {":path", "/"}} {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
}

// TestResetStream opens a stream with a body to come, resets it, and
// checks that the server forgets it (DATA on it then gets RST_STREAM
// STREAM_CLOSED, not an answer) while the connection goes on serving:
// a PING is answered and the next stream gets its 200.
func TestResetStream(t *testing.T) {
	modes(t, func(t *testing.T, inline bool) {
		addr, roots, _ := startH2lean(t, "static", "", inline)
		rc := dialRaw(t, addr, roots)
		rc.next(func(f http2.Frame) bool { s, ok := f.(*http2.SettingsFrame); return ok && !s.IsAck() })
		if err := rc.fr.WriteSettingsAck(); err != nil {
			t.Fatal(err)
		}
		rc.headers(1, "POST", false)
		if err := rc.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		if err := rc.fr.WriteData(1, true, []byte("late")); err != nil {
			t.Fatal(err)
		}
		f := rc.answer()
		if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeStreamClosed {
			t.Fatalf("after DATA on a reset stream: %v, want RST_STREAM 1 STREAM_CLOSED", f)
		}
		if err := rc.fr.WritePing(false, [8]byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		if p := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.PingFrame); return ok }).(*http2.PingFrame); !p.IsAck() || p.Data != [8]byte{1, 2, 3} {
			t.Fatalf("PING answered with %v", p)
		}
		rc.headers(3, "GET", true)
		h := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
		if h.StreamID != 3 || h.PseudoValue("status") != "200" {
			t.Fatalf("stream 3: %v %q", h.StreamID, h.Fields)
		}
		d := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
		if d.StreamID != 3 || !d.StreamEnded() || !bytes.Equal(d.Data(), staticBody) {
			t.Fatalf("stream 3 DATA: %v %q", d, d.Data())
		}
	})
}

// TestSendWindow announces a 30-byte stream window: the server sends 30
// bytes of the 100-byte answer, and the rest only after WINDOW_UPDATE. The
// PING written after the first 30 bytes arrived is answered before any
// more DATA: a server that ignored the window would have sent all 100
// bytes in its first write.
func TestSendWindow(t *testing.T) {
	modes(t, func(t *testing.T, inline bool) {
		addr, roots, _ := startH2lean(t, "static", "", inline)
		rc := dialRaw(t, addr, roots, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 30})
		rc.headers(1, "GET", true)
		var got []byte
		for len(got) < 30 {
			d := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
			got = append(got, d.Data()...)
		}
		if err := rc.fr.WritePing(false, [8]byte{7}); err != nil {
			t.Fatal(err)
		}
		for {
			f := rc.next(func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.DataFrame:
					return true
				case *http2.PingFrame:
					return f.IsAck()
				}
				return false
			})
			if d, ok := f.(*http2.DataFrame); ok {
				got = append(got, d.Data()...)
				continue
			}
			break
		}
		if len(got) != 30 {
			t.Fatalf("%d bytes sent before WINDOW_UPDATE, want the window's 30", len(got))
		}
		if err := rc.fr.WriteWindowUpdate(1, 70); err != nil {
			t.Fatal(err)
		}
		for {
			d := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
			got = append(got, d.Data()...)
			if d.StreamEnded() {
				break
			}
		}
		if !bytes.Equal(got, staticBody) {
			t.Fatalf("body %q", got)
		}
	})
}

// TestRefusesBadRequests: a request without :path is reset with
// PROTOCOL_ERROR, and the connection serves the next one.
func TestRefusesBadRequests(t *testing.T) {
	addr, roots, _ := startH2lean(t, "static", "", false)
	rc := dialRaw(t, addr, roots)
	rc.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}} {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	f := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if f.StreamID != 1 || f.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got %v", f)
	}
	rc.headers(3, "GET", true)
	if h := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame); h.PseudoValue("status") != "200" {
		t.Fatalf("stream 3: %q", h.Fields)
	}
}

// TestContentLengthMismatch: a body shorter than its content-length
// resets the stream with PROTOCOL_ERROR (RFC 9113 8.1.1).
func TestContentLengthMismatch(t *testing.T) {
	addr, roots, _ := startH2lean(t, "static", "", false)
	rc := dialRaw(t, addr, roots)
	rc.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", "/"}, {"content-length", "5"}} {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteData(1, true, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	f := rc.answer()
	if rst, ok := f.(*http2.RSTStreamFrame); !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("got %v, want RST_STREAM 1 PROTOCOL_ERROR", f)
	}
}

// TestProxyUpstreamDown answers 502 when the upstream cannot be reached.
func TestProxyUpstreamDown(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close() // nothing listens there now
	addr, roots, _ := startH2lean(t, "proxy", deadAddr, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/", nil)
	resp, err := h2Client(t, roots).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("got %d, want 502", resp.StatusCode)
	}
}
