package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// h2Front serves g over TLS, HTTP/2 offered, until the test ends; it
// returns the URL and a client that speaks HTTP/2 to it.
func h2Front(t *testing.T, g http.Handler) (string, *http.Client) {
	t.Helper()
	front := httptest.NewUnstartedServer(g)
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	c := front.Client()
	c.Transport.(*http.Transport).DisableCompression = true
	return front.URL, c
}

// countReverseProxy counts the requests g hands to httputil.ReverseProxy.
func countReverseProxy(g *Gateway) *atomic.Int64 {
	var n atomic.Int64
	next := g.proxy.Transport
	g.proxy.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return next.RoundTrip(r)
	})
	return &n
}

// h2Gateway serves a gateway to addr over HTTP/2 (h2Front) and counts
// the requests it hands to ReverseProxy.
func h2Gateway(t *testing.T, addr string) (g *Gateway, url string, c *http.Client, viaProxy *atomic.Int64) {
	t.Helper()
	g, err := New(Options{Config: oneUpstream(addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	viaProxy = countReverseProxy(g)
	url, c = h2Front(t, g)
	return g, url, c, viaProxy
}

// statusOf is the status of a GET of url with c.
func statusOf(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// withoutDirect turns g's direct path off: ReverseProxy with leanTransport
// over the same pools carries its group, as before the direct path.
func withoutDirect(g *Gateway) {
	u := g.state.Load().upstreams["u"]
	u.transport.(*leanTransport).u = &upstream{lean: u.lean}
	u.lean = nil
}

// An HTTP/2 client's requests that the lean pools can carry skip
// ReverseProxy, one pooled connection to the target carrying them one
// after another; the others (a body of unknown length or over 64 KiB, a
// query ReverseProxy re-encodes) still go through it.
func TestDirectPathCarriesHTTP2Clients(t *testing.T) {
	up, conns := countingTarget(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.RequestURI(), len(b))
	})
	defer up.Close()
	g := proxyTo(t, up, Options{})
	viaProxy := countReverseProxy(g)
	url, c := h2Front(t, g)
	do := func(method, path string, body io.Reader, hdr ...string) string {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, body)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Fatalf("the client spoke %s, want HTTP/2", resp.Proto)
		}
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	for _, c := range []struct {
		method, path string
		body         io.Reader
		want         string
	}{
		{"GET", "/a?x=1", nil, "200 GET /a?x=1 0"},
		{"HEAD", "/h", nil, "200 "},
		{"POST", "/p", strings.NewReader("hello"), "200 POST /p 5"},
		{"PUT", "/big", bytes.NewReader(make([]byte, leanMaxBody)), fmt.Sprintf("200 PUT /big %d", leanMaxBody)},
		{"DELETE", "/d", nil, "200 DELETE /d 0"},
		// HTTP/2's server takes Expect: 100-continue off the request and
		// answers it when the body is first read.
		{"POST", "/expect", strings.NewReader("e"), "200 POST /expect 1"},
	} {
		var hdr []string
		if c.path == "/expect" {
			hdr = []string{"Expect", "100-continue"}
		}
		if got := do(c.method, c.path, c.body, hdr...); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
	if n := viaProxy.Load(); n != 0 {
		t.Errorf("%d of the requests the lean pools carry went through ReverseProxy", n)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the target saw %d connections for requests one after another, want 1", n)
	}
	for i, c := range []struct {
		method, path string
		body         io.Reader
		hdr          []string
		want         string
	}{
		{"POST", "/unknown", io.MultiReader(strings.NewReader("ab"), strings.NewReader("c")), nil, "200 POST /unknown 3"},
		{"POST", "/over", bytes.NewReader(make([]byte, leanMaxBody+1)), nil, fmt.Sprintf("200 POST /over %d", leanMaxBody+1)},
		{"GET", "/q?a=1;b=2", nil, nil, "200 GET /q 0"}, // ReverseProxy drops the query it cannot parse,
	} {
		if got := do(c.method, c.path, c.body, c.hdr...); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
		if n := viaProxy.Load(); n != int64(i+1) {
			t.Fatalf("%s %s: %d requests through ReverseProxy, want %d", c.method, c.path, n, i+1)
		}
	}
}

// h2View is what an HTTP/2 client sees of one answer: the informational
// answers, then as viewOf.
func h2View(c *http.Client, method, url string, sniffed bool) string {
	var infos []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		infos = append(infos, fmt.Sprintf("%d %v", code, h))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, nil)
	view := viewWith(c, req, sniffed)
	return fmt.Sprintf("%v %s", infos, view)
}

// An HTTP/2 client sees the same answers through the direct path as
// through ReverseProxy and net/http's Transport: every raw answer of
// targetAnswers, informational answers, event streams.
func TestDirectPathAgreesWithReverseProxyOverHTTP2(t *testing.T) {
	cases := append(targetAnswers[:len(targetAnswers):len(targetAnswers)], []struct{ name, method, raw string }{
		{"103 Early Hints", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </b.js>\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"},
		{"event stream", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nContent-Length: 9\r\n\r\ndata: x\n\n"},
		{"typed", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
		{"Connection lists", "GET", "HTTP/1.1 200 OK\r\nConnection: X-A, X-B\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nProxy-Authenticate: x\r\nUpgrade: y\r\nContent-Length: 0\r\n\r\n"},
		{"chunked, trailers declared twice", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nTrailer: X-S, x-r\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\nX-S: 2\r\n\r\n"},
		{"500", "POST", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"},
	}...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := answeringTarget(t, c.raw)
			g, url, client, viaProxy := h2Gateway(t, addr)
			refURL, refClient := h2Front(t, referenceGateway(t, addr))
			sniffed := strings.Contains(strings.ToLower(c.raw), "content-type")
			got, want := h2View(client, c.method, url+"/x", sniffed), h2View(refClient, c.method, refURL+"/x", sniffed)
			if got != want {
				t.Errorf("through the direct path:\n  %s\nthrough ReverseProxy and net/http's Transport:\n  %s", got, want)
			}
			if n := viaProxy.Load(); n != 0 {
				t.Errorf("%d requests went through ReverseProxy", n)
			}
			poolSettles(t, g.state.Load().upstreams["u"].lean[addr])
		})
	}
}

// A target sees the same request from an HTTP/2 client through the
// direct path as through ReverseProxy and net/http's Transport: the
// forwarding fields, Te: trailers, an empty User-Agent, fields the
// rewrite drops, repeated fields, escaped targets, bodies.
func TestDirectPathWritesAsReverseProxy(t *testing.T) {
	addr := headTarget(t)
	_, url, client, viaProxy := h2Gateway(t, addr)
	refURL, refClient := h2Front(t, referenceGateway(t, addr))
	send := func(c *http.Client, base, method, path, body string, hdr []string) string {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		req.Host = "front.example:8443"
		resp, err := c.Do(req)
		if err != nil {
			return "failed: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d\n%s", resp.StatusCode, b)
	}
	for _, c := range []struct {
		method, path, body string
		hdr                []string
	}{
		{"GET", "/a", "", nil},
		{"GET", "/a%2Fb/c%20d?q=a+b&r=%20x", "", []string{"User-Agent", "ua/1", "Accept-Encoding", "br"}},
		{"GET", "/", "", []string{"User-Agent", ""}},
		{"GET", "/", "", []string{"X-Forwarded-For", "10.0.0.1", "X-Forwarded-For", "10.0.0.2, 10.0.0.3",
			"X-Forwarded-Host", "spoofed", "X-Forwarded-Proto", "gopher", "Forwarded", "for=1.2.3.4"}},
		{"GET", "/", "", []string{"Te", "trailers", "Proxy-Authorization", "Basic x", "X-M", "1", "X-M", "2"}},
		{"GET", "/", "", []string{"Cookie", "a=1", "Cookie", "b=2"}},
		{"POST", "/p", "body", []string{"Content-Type", "text/plain"}},
		{"POST", "/empty", "", nil},
		{"PUT", "/put", "x", nil},
		{"OPTIONS", "/o", "", nil},
	} {
		got, want := send(client, url, c.method, c.path, c.body, c.hdr), send(refClient, refURL, c.method, c.path, c.body, c.hdr)
		if testing.Verbose() {
			t.Logf("%s %s %q:\n%s", c.method, c.path, c.hdr, got)
		}
		if got != want {
			t.Errorf("%s %s %q: the target saw through the direct path:\n%s\nthrough ReverseProxy and net/http's Transport:\n%s", c.method, c.path, c.hdr, got, want)
		}
	}
	if n := viaProxy.Load(); n != 0 {
		t.Errorf("%d requests went through ReverseProxy", n)
	}
}

// A body of unknown length (chunked from the target, or until it
// closes) and an event stream reach an HTTP/2 client piece by piece as
// the target sends them, as ReverseProxy flushes them: the client reads
// the first piece while the target still holds the rest.
func TestDirectPathStreams(t *testing.T) {
	// first: what the target sends with its head; seen: what the client
	// reads of the body before the target sends rest.
	for _, c := range []struct{ name, head, first, seen, rest, want string }{
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nfirst\r\n", "first", "4\r\nrest\r\n0\r\n\r\n", "firstrest"},
		{"to close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", "first", "first", "rest", "firstrest"},
		{"event stream", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\n", "first", "first", "rest", "firstrest"},
		// The head alone: the client has it before any of the body.
		{"head first", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "", "", "9\r\nfirstrest\r\n0\r\n\r\n", "firstrest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			release := make(chan struct{})
			addr := scriptedUpstream(t, func(conn net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(conn, c.head+c.first)
				<-release
				_, _ = io.WriteString(conn, c.rest)
			})
			_, url, client, viaProxy := h2Gateway(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
			resp, err := client.Do(req)
			if err != nil {
				close(release)
				t.Fatalf("no head while the target holds the body: %v", err)
			}
			defer resp.Body.Close()
			first := make([]byte, len(c.seen))
			_, err = io.ReadFull(resp.Body, first)
			close(release)
			if err != nil || string(first) != c.seen {
				t.Fatalf("the first piece: %q, %v; want it before the target sends the rest", first, err)
			}
			rest, err := io.ReadAll(resp.Body)
			if got := string(first) + string(rest); err != nil || got != c.want {
				t.Errorf("body %q, %v; want %q", got, err, c.want)
			}
			if n := viaProxy.Load(); n != 0 {
				t.Errorf("%d requests went through ReverseProxy", n)
			}
		})
	}
}

// Over HTTP/2 on the direct path, a target that breaks off its body has
// failed the request: the client's stream is reset, not ended as if the
// body were whole, and three such answers open the breaker. A client
// that resets its stream mid-body says nothing of the target: the
// breaker stays closed, the target's connection is closed rather than
// kept, and nothing stays in flight.
func TestDirectPathBrokenBodiesOverHTTP2(t *testing.T) {
	t.Run("target", func(t *testing.T) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
			_ = brw.Flush()
			_ = conn.Close()
		}))
		defer up.Close()
		reg := prometheus.NewPedanticRegistry()
		g := breakerGateway(t, up, reg, 0)
		viaProxy := countReverseProxy(g)
		url, client := h2Front(t, g)
		for i := range 3 {
			resp, err := client.Get(url + "/")
			if err != nil {
				continue // reset before the head went out
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: status %d before the breaker opened", i, resp.StatusCode)
			}
			if _, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("request %d: the truncated body read as complete", i)
			}
			resp.Body.Close()
		}
		if status := statusOf(t, client, url+"/"); status != http.StatusServiceUnavailable {
			t.Errorf("after three truncated bodies got %d, want 503 breaker_open", status)
		}
		if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
			t.Error("requests left in flight")
		}
		if n := viaProxy.Load(); n != 0 {
			t.Errorf("%d requests went through ReverseProxy", n)
		}
	})
	t.Run("client", func(t *testing.T) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ok" {
				_, _ = io.WriteString(w, "ok")
				return
			}
			rc := http.NewResponseController(w)
			chunk := strings.Repeat("x", 16<<10)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				if _, err := io.WriteString(w, chunk); err != nil || rc.Flush() != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}))
		defer up.Close()
		reg := prometheus.NewPedanticRegistry()
		g := breakerGateway(t, up, reg, 0)
		viaProxy := countReverseProxy(g)
		url, client := h2Front(t, g)
		for i := range 4 {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/stream", nil)
			resp, err := client.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			cancel() // RST_STREAM mid-body; the connection stays
			resp.Body.Close()
		}
		if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
			t.Fatal("abandoned requests never finished")
		}
		pool := g.state.Load().upstreams["u"].lean[strings.TrimPrefix(up.URL, "http://")]
		if open, idle := poolCounts(pool); open != idle {
			t.Errorf("the pool counts %d open, %d idle: a connection of an abandoned answer is held", open, idle)
		}
		if status := statusOf(t, client, url+"/ok"); status != http.StatusOK {
			t.Errorf("after clients reset their streams mid-body got %d; the breaker blamed the target", status)
		}
		if n := viaProxy.Load(); n != 0 {
			t.Errorf("%d requests went through ReverseProxy", n)
		}
	})
}

// The direct path allocates less a request than ReverseProxy with
// leanTransport over the same pools (client, HTTP/2 server, gateway and
// target all in this process, so the counts include theirs).
func TestDirectPathAllocatesLess(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	perRequest := func(g *Gateway) (objects, bytes uint64) {
		url, c := h2Front(t, g)
		return allocsPerGet(t, c, url+"/")
	}
	old := proxyTo(t, up, Options{})
	withoutDirect(old)
	oldObjects, oldBytes := perRequest(old)
	newObjects, newBytes := perRequest(proxyTo(t, up, Options{}))
	t.Logf("allocations a request: %d objects, %d bytes through ReverseProxy; %d objects, %d bytes on the direct path",
		oldObjects, oldBytes, newObjects, newBytes)
	if newObjects+20 > oldObjects {
		t.Errorf("the direct path allocates %d objects a request, ReverseProxy %d: want at least 20 fewer", newObjects, oldObjects)
	}
}
