package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// stallingTarget is a scripted target that reads one request head,
// writes answer (maybe nothing, or a head and part of a body) and then
// waits for the gateway to close the connection: got is signalled when
// the request came, closed with true when the gateway closed the
// connection, false when the target's 10 s deadline passed first.
func stallingTarget(t *testing.T, answer string) (addr string, got chan struct{}, closed chan bool) {
	t.Helper()
	got, closed = make(chan struct{}, 1), make(chan bool, 1)
	addr = scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = req.Body.Close()
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		got <- struct{}{}
		_, err = io.Copy(io.Discard, br)
		var ne net.Error
		closed <- !(errors.As(err, &ne) && ne.Timeout())
	})
	return addr, got, closed
}

// netEngineTo serves a gateway to addr on the net/http engine (so its
// HTTP/1.1 group is carried by leanTransport) and returns its URL and
// the lean pool to addr.
func netEngineTo(t *testing.T, addr string) (string, *leanPool) {
	t.Helper()
	g, err := New(Options{Config: oneUpstream(addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	return front.URL, g.state.Load().upstreams["u"].lean[addr]
}

func poolOpen(p *leanPool) int {
	open, _ := poolCounts(p)
	return open
}

// poolCounts is p's connections open and, of them, idle.
func poolCounts(p *leanPool) (open, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, len(p.idle)
}

// A client that leaves while the target has not answered, or while the
// body is still coming, ends the exchange with the target at once, as
// net/http's Transport does with a done request context: the gateway
// closes the connection to the target (it cannot carry another request)
// instead of holding it, and the handler, until the target answers or
// the response-head timeout (30 s by default; none for a body) passes.
func TestLeanTransportClientLeaving(t *testing.T) {
	for _, c := range []struct{ name, answer string }{
		{"waiting for the head", ""},
		{"during the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got, closed := stallingTarget(t, c.answer)
			url, pool := netEngineTo(t, addr)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/slow", nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}()
			<-got
			cancel()
			<-done
			if !<-closed {
				t.Fatal("the client left, and the gateway kept its connection to the target open")
			}
			if !eventually(func() bool { return poolOpen(pool) == 0 }) {
				t.Fatalf("the pool counts %d connections open after the one it had was closed", poolOpen(pool))
			}
		})
	}
}

// Informational answers before the final one (103 Early Hints) reach the
// client, as ReverseProxy relays them from net/http's Transport
// (ClientTrace.Got1xxResponse), with their fields.
func TestLeanTransportRelays1xx(t *testing.T) {
	addr := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	url, _ := netEngineTo(t, addr)
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		t.Fatalf("final answer %d %q, want 200 \"ok\"", resp.StatusCode, b)
	}
	if want := "103 </a.css>; rel=preload"; len(got) != 1 || got[0] != want {
		t.Fatalf("the client saw informational answers %q, want [%q]", got, want)
	}
}

// viewOf is what a client sees of one answer: status, fields (but Date),
// body and trailers, or "failed" when the answer broke off (whether its
// head had gone out first depends on timing, not on the transport).
func viewOf(t *testing.T, method, url string, sniffed bool) string {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
	return viewWith(c, req, sniffed)
}

// viewWith is viewOf for req sent with c.
func viewWith(c *http.Client, req *http.Request, sniffed bool) string {
	resp, err := c.Do(req)
	if err != nil {
		return "failed"
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "failed"
	}
	resp.Header.Del("Date")
	if !sniffed {
		// net/http's server sniffs a type when the first write of a body
		// comes before a flush, which depends on how the target's bytes
		// arrived, not on the transport.
		resp.Header.Del("Content-Type")
	}
	return fmt.Sprintf("%s %d cl=%d te=%v %v body=%q trailer=%v", resp.Proto, resp.StatusCode, resp.ContentLength, resp.TransferEncoding, resp.Header, b, resp.Trailer)
}

// targetAnswers are raw answers of a target to a request of method: the
// framings, fields and faults the transports must treat alike.
var targetAnswers = []struct{ name, method, raw string }{
	{"empty", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{"204 with a length", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"},
	{"304 with a length", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n"},
	{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"},
	{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"chunked with extensions and trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3;a=b\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"},
	{"undeclared trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-U: 2\r\n\r\n"},
	{"trailer declared, not chunked", "GET", "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 2\r\n\r\nok"},
	{"HEAD chunked with a trailer", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"},
	{"304 chunked with a trailer", "GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"},
	{"malformed chunk", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
	{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"},
	{"short chunked body", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"},
	{"to close", "GET", "HTTP/1.1 200 OK\r\n\r\nuntil the end"},
	{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold"},
	{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
	{"hop-by-hop", "GET", "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"},
	{"many values", "GET", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-type: text/x\r\nContent-Length: 2\r\n\r\nok"},
}

// The net/http engine answers clients the same whether a response came
// through leanTransport or net/http's Transport: the same raw responses
// from a scripted target through two gateways, one with its group's
// transport swapped back to net/http's.
func TestLeanTransportAgreesWithNetHTTP(t *testing.T) {
	for _, c := range targetAnswers {
		t.Run(c.name, func(t *testing.T) {
			addr := answeringTarget(t, c.raw)
			lean, pool := netEngineTo(t, addr)
			ref := netHTTPReference(t, addr)
			sniffed := strings.Contains(strings.ToLower(c.raw), "content-type")
			got, want := viewOf(t, c.method, lean+"/x", sniffed), viewOf(t, c.method, ref.URL+"/x", sniffed)
			if got != want {
				t.Errorf("through leanTransport:\n  %s\nthrough net/http's Transport:\n  %s", got, want)
			}
			poolSettles(t, pool)
		})
	}
}

// answeringTarget is a scripted target that answers one request on each
// connection with raw.
func answeringTarget(t *testing.T, raw string) string {
	t.Helper()
	return scriptedUpstream(t, func(conn net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = req.Body.Close()
		_, _ = io.WriteString(conn, raw)
	})
}

// poolSettles checks that after one exchange the connection is back in
// pool or closed and uncounted.
func poolSettles(t *testing.T, pool *leanPool) {
	t.Helper()
	if !eventually(func() bool {
		open, idle := poolCounts(pool)
		return open == idle && open <= 1
	}) {
		open, idle := poolCounts(pool)
		t.Errorf("the pool counts %d open, %d idle, after one exchange", open, idle)
	}
}

// headTarget answers each request with its head as the target read it:
// the request line, then the field lines sorted (the order of fields is
// free), then the body.
func headTarget(t *testing.T) string {
	t.Helper()
	return scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			tp := textproto.NewReader(br)
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			var fields []string
			cl := 0
			for {
				f, err := tp.ReadLine()
				if err != nil {
					return
				}
				if f == "" {
					break
				}
				fields = append(fields, f)
				if k, v, _ := strings.Cut(f, ":"); strings.EqualFold(k, "content-length") {
					cl, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			body := make([]byte, cl)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			sort.Strings(fields)
			echo := line + "\n" + strings.Join(fields, "\n") + "\n\n" + string(body)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(echo), echo)
		}
	})
}

// The target sees the same request whether leanTransport or net/http's
// Transport wrote it (raw requests from a client, through the net/http
// engine).
func TestLeanTransportWritesAsNetHTTP(t *testing.T) {
	addr := headTarget(t)
	lean, _ := netEngineTo(t, addr)
	ref := netHTTPReference(t, addr)
	send := func(front, raw string) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return "failed: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// X-Forwarded-For names the client's port.
		var keep []string
		for l := range strings.SplitSeq(string(b), "\n") {
			if !strings.HasPrefix(l, "X-Forwarded-For:") {
				keep = append(keep, l)
			}
		}
		return fmt.Sprintf("%d\n%s", resp.StatusCode, strings.Join(keep, "\n"))
	}
	for _, raw := range []string{
		"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ua/1\r\nAccept-Encoding: br\r\n\r\n",
		"GET /a%2Fb/c%20d?q=a+b&r=%20x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://other.example/abs?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-M: 1\r\nX-M: 2\r\nx-lower: v\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTe: trailers\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"PATCH / HTTP/1.1\r\nHost: h\r\n\r\n",
		"DELETE / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"DELETE / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n",
	} {
		got, want := send(lean, raw), send(ref.URL, raw)
		if testing.Verbose() {
			t.Logf("%q:\n%s", raw, got)
		}
		if got != want {
			t.Errorf("%q: the target saw through leanTransport:\n%s\nthrough net/http's Transport:\n%s", raw, got, want)
		}
	}
}

// Concurrent streams of one HTTP/2 client connection to an HTTP/1.1
// group each take their own pooled connection: every answer is its own
// request's, whole, and afterwards every connection the pool opened is
// idle in it (none leaked, none counted twice).
func TestLeanTransportConcurrentStreams(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Path", r.URL.Path)
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush()
		}
		_, _ = w.Write(b)
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	front := httptest.NewUnstartedServer(g)
	front.EnableHTTP2 = true
	front.StartTLS()
	defer front.Close()
	client := front.Client()
	pool := g.state.Load().upstreams["u"].lean[strings.TrimPrefix(up.URL, "http://")]

	const streams = 32
	errs := make(chan error, streams)
	for i := range streams {
		go func() {
			path := fmt.Sprintf("/s%d", i)
			body := strings.Repeat(path, 100*(i+1))
			q := ""
			if i%2 == 1 {
				q = "?chunked"
			}
			resp, err := client.Post(front.URL+path+q, "text/plain", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				errs <- err
			case resp.ProtoMajor != 2:
				errs <- fmt.Errorf("%s: the client spoke %s, want HTTP/2", path, resp.Proto)
			case resp.Header.Get("X-Path") != path || string(b) != body:
				errs <- fmt.Errorf("%s: answer for %s with %d bytes, want its own with %d", path, resp.Header.Get("X-Path"), len(b), len(body))
			default:
				errs <- nil
			}
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	pool.mu.Lock()
	open, idle := pool.open, len(pool.idle)
	pool.mu.Unlock()
	if open != idle || open < 1 || open > streams {
		t.Fatalf("after %d streams: the pool counts %d open, %d idle; want all idle, 1-%d", streams, open, idle, streams)
	}
}

// A body that streams for longer than the response-head timeout after
// its head arrives whole: the head's deadline is lifted for the body.
func TestLeanTransportSlowBodyOutlivesHeadTimeout(t *testing.T) {
	addr := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = req.Body.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := range 5 {
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintf(c, "1\r\n%d\r\n", i)
		}
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	g, err := New(Options{Config: oneUpstream(addr), ResponseHeaderTimeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	front := httptest.NewServer(g)
	defer front.Close()
	resp, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "01234" {
		t.Fatalf("body %q, %v; want \"01234\" whole", b, err)
	}
}

// Bytes after a whole response are no one's answer: the connection they
// came on is not reused, and the next request gets its own answer.
func TestLeanTransportBytesAfterResponse(t *testing.T) {
	for _, first := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
	} {
		addr := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
			extra := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_ = req.Body.Close()
				_, _ = io.WriteString(c, first+extra+"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
				extra = ""
			}
		})
		url, _ := netEngineTo(t, addr)
		for i := range 2 {
			resp, err := http.Get(url + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(b) == "evil" || string(b) == "fine" {
				t.Fatalf("%q: request %d got a later answer %q as its own", first, i+1, b)
			}
		}
	}
}

// netHTTPReference serves, on the net/http engine, referenceGateway to
// addr.
func netHTTPReference(t *testing.T, addr string) *httptest.Server {
	t.Helper()
	ref := httptest.NewServer(referenceGateway(t, addr))
	t.Cleanup(ref.Close)
	return ref
}

// referenceGateway is a gateway to addr whose group goes through
// ReverseProxy and net/http's Transport, as before leanTransport and the
// direct path: the reference the lean pools are held to.
func referenceGateway(t *testing.T, addr string) *Gateway {
	t.Helper()
	g, err := New(Options{Config: oneUpstream(addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	u := g.state.Load().upstreams["u"]
	u.transport = u.transport.(*leanTransport).fallback
	u.lean = nil // no direct path
	return g
}

// The control point's fields reach the final answer after an informational
// one, on the direct path (GET) and through ReverseProxy (a body past what
// the lean pools carry): relaying a 1xx clears the header it shared with
// them.
func TestDecisionFieldsAfter1xx(t *testing.T) {
	addr := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	g, err := New(Options{Config: oneUpstream(addr), Checker: &labelRecorder{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
	}{
		{"direct path", http.MethodGet, nil},
		{"ReverseProxy", http.MethodPost, bytes.Repeat([]byte("x"), leanMaxBody+1)},
	} {
		var informed []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			informed = append(informed, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), tc.method, front.URL+"/", bytes.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if len(informed) != 1 || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: informational answers %q, final %d; want one 103, then 200", tc.name, informed, resp.StatusCode)
		}
		if got := resp.Header.Get(flow.HeaderDecision); got != "accepted" {
			t.Errorf("%s: the final answer's %s is %q, want accepted", tc.name, flow.HeaderDecision, got)
		}
	}
}
