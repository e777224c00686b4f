package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rawExchange sends req on a new connection to addr, half-closes it when
// closeWrite, and returns the status of the answer, or 0 when the
// connection closed without one.
func rawExchange(t *testing.T, addr, req string, closeWrite bool) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer and no close within 5 s: %v", err)
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A client's malformed, truncated or stalled request body is the
// client's fault, on both engines: it gets a 4xx (or, when it left, a
// closed connection), and the target's breaker, which opens after three
// failures, stays closed however many such requests come.
func TestClientBodyFaultsSpareTheTarget(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	const head = "POST /upload HTTP/1.1\r\nHost: gw\r\n"
	cases := []struct {
		name       string
		req        string
		closeWrite bool
		stall      bool
		want       int // 0: a 4xx or a closed connection
	}{
		{name: "invalid chunk size", req: head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", want: http.StatusBadRequest},
		{name: "truncated chunked body", req: head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", closeWrite: true},
		{name: "content-length longer than the body", req: head + "Content-Length: 100\r\n\r\nshort", closeWrite: true},
		{name: "stalled body", req: head + "Content-Length: 100\r\n\r\nshort", stall: true, want: http.StatusRequestTimeout},
	}
	for _, engine := range engines {
		for _, tc := range cases {
			reg := prometheus.NewPedanticRegistry()
			g := breakerGateway(t, up, reg, 300*time.Millisecond)
			addr := serveEngine(t, g, engine)
			for i := range 6 {
				status := rawExchange(t, addr, tc.req, tc.closeWrite)
				switch {
				case tc.want != 0 && status != tc.want:
					t.Errorf("%s, %s: request %d: status %d, want %d", engine, tc.name, i, status, tc.want)
				case tc.want == 0 && status != 0 && (status < 400 || status >= 500):
					t.Errorf("%s, %s: request %d: status %d, want a 4xx or a closed connection", engine, tc.name, i, status)
				}
			}
			status := rawExchange(t, addr, head+"Content-Length: 5\r\n\r\nhello", false)
			if status != http.StatusOK {
				t.Errorf("%s, %s: a good request afterwards got %d, want 200 (503: the breaker blamed the target)", engine, tc.name, status)
			}
			if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
				t.Errorf("%s, %s: requests left in flight", engine, tc.name)
			}
		}
	}
}

// serveEngine serves g on engine (a plain http.Server with no read
// timeout of its own, or the fast engine's server) until the test ends,
// and returns its address.
func serveEngine(t *testing.T, g *Gateway, engine string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if engine == "net" {
		srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	if engine == "loop" {
		_ = ln.Close()
		return serveLoopAddr(t, g)
	}
	if engine == "lean" {
		_ = ln.Close()
		url, _ := serveLean(t, g)
		return strings.TrimPrefix(url, "http://")
	}
	fs := g.NewFastServer(nil)
	done := make(chan struct{})
	go func() { _ = fs.Serve(FastListener(ln)); close(done) }()
	t.Cleanup(func() { _ = fs.Shutdown(); <-done })
	return ln.Addr().String()
}

// The body read timeout bounds the body only: once the body is in, a
// response may stream for longer than the timeout, on both engines.
func TestBodyTimeoutSparesTheResponse(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		rc := http.NewResponseController(w)
		for range 8 { // 800 ms, past the 200 ms timeout
			io.WriteString(w, "tick\n")
			_ = rc.Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer up.Close()
	g := breakerGateway(t, up, prometheus.NewPedanticRegistry(), 200*time.Millisecond)
	for _, engine := range engines {
		resp, err := http.Post("http://"+serveEngine(t, g, engine)+"/upload", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatalf("%s: %v", engine, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || strings.Count(string(b), "tick") != 8 {
			t.Errorf("%s: status %d, %d ticks, err %v: want 200 and all 8 ticks", engine, resp.StatusCode, strings.Count(string(b), "tick"), err)
		}
	}
}

// closingBody is a request body as net/http's server holds it: once read
// to its end, the server may close it when the handler answers, and a
// read after that fails.
type closingBody struct {
	data   []byte
	closed bool
}

func (c *closingBody) Read(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("http: invalid Read on closed Body")
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// Once a client's body has been read to its end (its declared length, or
// EOF), reading on gives EOF without touching the body under it, which
// the server may have closed meanwhile: the transport's last read, which
// looks for the end, then failed and closed the target's connection
// with the response half relayed (TestLargeBodies failed about once in
// 300 runs).
func TestClientBodyEndsOnce(t *testing.T) {
	for _, want := range []int64{5, -1} {
		under := &closingBody{data: []byte("hello")}
		b := newClientBody(under, want)
		if got, err := io.ReadAll(io.LimitReader(b, 5)); string(got) != "hello" || err != nil {
			t.Fatalf("want %d: read %q, %v", want, got, err)
		}
		if want < 0 { // the end is known only from EOF
			if n, err := b.Read(make([]byte, 8)); n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("want %d: read at the end: %d, %v; want EOF", want, n, err)
			}
		}
		under.closed = true // the server answered and closed the body
		for range 2 {
			if n, err := b.Read(make([]byte, 8)); n != 0 || !errors.Is(err, io.EOF) {
				t.Errorf("want %d: read after the body was closed: %d, %v; want EOF", want, n, err)
			}
		}
		if err := b.failed(); err != nil {
			t.Errorf("want %d: the body counts as failed: %v", want, err)
		}
	}
}
