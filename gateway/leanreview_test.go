package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoTarget is a net/http server on loopback that answers each request
// with a JSON echo of it, and the echo's digest in X-Echo-Sum (so that
// an answer to HEAD tells it too).
func echoTarget(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(echoRequest),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// dropTarget is a loopback target that closes each connection at once.
func dropTarget(t testing.TB) string {
	return listenTB(t, func(ln net.Listener) func() {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
		return func() { _ = ln.Close() }
	})
}

// rawAnswers are the echo target's canned responses, by path. Each says
// Connection: close, as the target closes after it: a pooled connection
// closed unannounced fails the next request sent on it with 502 unless
// the method is idempotent, and which engine met it would depend on the
// order of the test's requests. Heads the
// lean engine refuses by design (Content-Length with Transfer-Encoding,
// two lengths: it answers 502 where net/http and fasthttp relay one
// reading) are not among them; TestLeanRelaysUnusualResponses has one.
var rawAnswers = map[string]string{
	"/raw/204":        "HTTP/1.1 204 No Content\r\nX-R: 1\r\nConnection: close\r\n\r\n",
	"/raw/304":        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
	"/raw/103":        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
	"/raw/toclose":    "HTTP/1.1 200 OK\r\nX-R: 1\r\nConnection: close\r\n\r\nuntil the end",
	"/raw/http10":     "HTTP/1.0 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nold!",
	"/raw/chunked":    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
	"/raw/short":      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc",
	"/raw/long":       "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcdefHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
	"/raw/hop":        "HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: x\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nok",
	"/raw/conn-cl":    "HTTP/1.1 200 OK\r\nConnection: Content-Length, close\r\nContent-Length: 2\r\n\r\nok",
	"/raw/conn-te":    "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding, close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"/raw/badchunk":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
	"/raw/badchunk2":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n-1\r\nx\r\n0\r\n\r\n",
	"/raw/101":        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil",
	"/raw/1xx-many":   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
	"/raw/204-body":   "HTTP/1.1 204 No Content\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil",
	"/raw/cl-te":      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
	"/raw/chunk-big":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
	"/raw/status-bad": "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
	"/raw/bare-lf":    "HTTP/1.1 200 OK\nContent-Length: 2\nConnection: close\n\nok",
}

// requestEcho is what the echo target saw of a request.
type requestEcho struct {
	Method, Target, Proto, Host string
	Header                      http.Header
	ContentLength               int64
	TransferEncoding            []string
	Body                        string
	Trailer                     http.Header
	BodyErr                     string `json:",omitempty"`
}

func echoRequest(w http.ResponseWriter, r *http.Request) {
	if raw, ok := rawAnswers[r.URL.Path]; ok {
		_, _ = io.Copy(io.Discard, r.Body)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString(raw)
		_ = brw.Flush()
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	h := r.Header.Clone()
	h.Del("Content-Length")
	if cs := h.Values("Cookie"); len(cs) > 1 {
		h.Set("Cookie", strings.Join(cs, "; "))
	}
	e := requestEcho{
		Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Host: strings.ToLower(r.Host),
		Header: h, ContentLength: r.ContentLength,
		TransferEncoding: r.TransferEncoding, Body: string(body), Trailer: r.Trailer,
	}
	if err != nil {
		e.BodyErr = err.Error()
	}
	out, _ := json.Marshal(e)
	sum := sha256.Sum256(out)
	w.Header().Set("X-Echo-Sum", hex.EncodeToString(sum[:8]))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// listenTB listens on a loopback port, serves it with serve until the
// test ends (serve returns the stop) and returns the address.
func listenTB(t testing.TB, serve func(net.Listener) func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(serve(ln))
	return ln.Addr().String()
}

// echoOf decodes the echo target's answer.
func echoOf(t *testing.T, body string) requestEcho {
	t.Helper()
	var e requestEcho
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an echo: %q", body)
	}
	return e
}

// A Connection field may list any name, Content-Length and Host too; the
// lean engine forwards the body it read, so the field that frames it goes
// with it, and the target gets the Host it routes by. Dropping
// Content-Length made the target read the body as the next request on
// its connection (request smuggling).
func TestKeepsFramingFieldsConnectionLists(t *testing.T) {
	for _, engine := range []string{"fast", "lean"} {
		t.Run(engine, func(t *testing.T) { keepsFramingFields(t, gatewayTo(t, engine, echoTarget(t))) })
	}
}

func keepsFramingFields(t *testing.T, addr string) {
	c, br := dialLean(t, addr)
	smuggled := "GET /admin HTTP/1.1\r\nHost: h\r\n\r\n"
	resp, body := exchangeOn(t, c, br, "POST /p HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 32\r\n\r\n"+smuggled)
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if e := echoOf(t, body); e.Body != smuggled || e.ContentLength != 32 {
		t.Errorf("the target read the POST with length %d and body %q", e.ContentLength, e.Body)
	}
	resp, body = exchangeOn(t, c, br, "GET /next HTTP/1.1\r\nHost: h\r\nConnection: Host\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("GET with Connection: Host: %d %q", resp.StatusCode, body)
	}
	if e := echoOf(t, body); e.Target != "/next" || e.Host != "h" || e.Header.Get("X-Forwarded-Host") != "h" {
		t.Errorf("the target read %s with Host %q, X-Forwarded-Host %q", e.Target, e.Host, e.Header.Get("X-Forwarded-Host"))
	}
}

// Likewise a target's Connection field listing Content-Length or
// Transfer-Encoding: the lean engine relays the body as framed, so the
// field that frames it goes to the client. Dropped, the client read the
// next answer as this one's body.
func TestRelaysFramingFieldsConnectionLists(t *testing.T) {
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/cl":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok")
			case "/te":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
			}
		}
	})
	for _, engine := range []string{"fast", "lean"} {
		t.Run(engine, func(t *testing.T) { relaysFramingFields(t, gatewayTo(t, engine, up)) })
	}
}

func relaysFramingFields(t *testing.T, addr string) {
	c, br := dialLean(t, addr)
	for _, path := range []string{"/cl", "/te"} {
		resp, body := exchangeOn(t, c, br, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "ok" || resp.Close {
			t.Errorf("%s: %d %q close=%v, want 200 \"ok\" kept alive", path, resp.StatusCode, body, resp.Close)
		}
		if resp.Header.Get("X-Hop") != "" {
			t.Errorf("%s: a field the target's Connection listed reached the client", path)
		}
		resp, body = exchangeOn(t, c, br, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "next" {
			t.Errorf("after %s: %d %q, want 200 \"next\"", path, resp.StatusCode, body)
		}
	}
}

// The gateway's own answers (an unreachable target, a rejection, no
// route) to a HEAD request have a head only, as any answer to HEAD: the
// lean engine wrote the JSON body too, which the client then read as the
// start of the next answer on its connection.
func TestLeanOwnAnswerToHeadHasNoBody(t *testing.T) {
	addr, _ := leanTo(t, dropTarget(t))
	c, br := dialLean(t, addr)
	if _, err := io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"HEAD", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %d %q, want 502", m, resp.StatusCode, b)
		}
		if m == "GET" && !strings.Contains(string(b), "upstream_unavailable") {
			t.Errorf("GET: body %q", b)
		}
	}
}

// A client that ends its side mid-head gets 400 before the connection
// closes, as from the fast and the net/http engine (RFC 9112 section 8
// allows either; a client's bug is easier to find with one).
func TestLeanAnswersHeadCutShort(t *testing.T) {
	addr, _ := leanTo(t, echoTarget(t))
	c, br := dialLean(t, addr)
	if _, err := io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	for i, want := range []int{200, 400} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want {
			t.Errorf("answer %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// A pipelined request whose head is not whole when the one before it
// has been answered gets its own head timeout from then, as net/http
// gives each request: it ran on the timeout of the request before it,
// spent while the target worked on that one, and the connection was
// closed under the client. (The target takes longer than the timeout;
// the client sends the rest of the head as soon as it has the answer.)
func TestLeanPipelinedHeadGetsItsOwnTimeout(t *testing.T) {
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				time.Sleep(1500 * time.Millisecond)
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ls := g.NewLeanServer(nil)
	ls.headTimeout = time.Second
	addr := listenTB(t, func(ln net.Listener) func() {
		done := make(chan struct{})
		go func() { _ = ls.Serve(ln); close(done) }()
		return func() {
			_ = ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ls.Shutdown(ctx)
			<-done
		}
	})
	c, br := dialLean(t, addr)
	// The first head in two pieces, so that its head timeout starts.
	_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
	resp, body := exchangeOn(t, c, br, "Host: h\r\n\r\nGET /next HTTP/1.1\r\n")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("/slow: %d %q", resp.StatusCode, body)
	}
	resp, body = exchangeOn(t, c, br, "Host: h\r\n\r\n")
	if resp.StatusCode != 200 || body != "ok" {
		t.Errorf("/next: %d %q", resp.StatusCode, body)
	}
}

// The same over TLS, where the extra bytes come in the record that ends
// the answer: they wait in the TLS connection's buffer, not in the
// socket a peek sees, when the engine read the body only up to its
// length, or when a body to HEAD came in a record of its own, read from
// the socket with the head's.
func TestLeanPoolSkipsTLSConnectionWithExtraBytes(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	cfg := srv.TLS.Clone()
	cfg.NextProtos = nil
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	body := strings.Repeat("b", 10000)
	sent := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					switch req.URL.Path { // one write: one record
					case "/twice":
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+body+
							"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nleaked!")
						continue
					case "/head":
						// A body to HEAD, in a record of its own.
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nleaked!")
						sent <- struct{}{}
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")
				}
			}()
		}
	}()
	opts := Options{Config: oneUpstream(ln.Addr().String()), ResponseHeaderTimeout: 5 * time.Second,
		UpstreamTLSConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}}
	opts.Config.Upstreams[0].TLS = true
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	url, _ := serveLean(t, g)
	c, br := dialLean(t, strings.TrimPrefix(url, "http://"))
	if resp, got := exchangeOn(t, c, br, "GET /twice HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || got != body {
		t.Fatalf("first answer: %d, %d bytes", resp.StatusCode, len(got))
	}
	c2, br2 := dialLean(t, strings.TrimPrefix(url, "http://"))
	if _, got := exchangeOn(t, c2, br2, "GET /other HTTP/1.1\r\nHost: h\r\n\r\n"); got != "mine" {
		t.Errorf("another client's request got %q, want \"mine\"", got)
	}
	if _, err := io.WriteString(c, "HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v", err)
	}
	<-sent
	// Bytes still on their way when the next request goes out cannot be
	// told from its answer (by any proxy); these have had time to arrive.
	time.Sleep(20 * time.Millisecond)
	if _, got := exchangeOn(t, c2, br2, "GET /other HTTP/1.1\r\nHost: h\r\n\r\n"); got != "mine" {
		t.Errorf("after a body to HEAD, another client's request got %q, want \"mine\"", got)
	}
}

// panicHandler is a slog handler that panics on one message while armed:
// a stand-in for a bug in the gateway's bookkeeping.
type panicHandler struct {
	msg   string
	armed *atomic.Bool
}

func (h panicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h panicHandler) WithGroup(string) slog.Handler            { return h }
func (h panicHandler) Handle(_ context.Context, r slog.Record) error {
	if h.armed.Load() && r.Message == h.msg {
		panic("bookkeeping bug")
	}
	return nil
}

// A panic while a request holds its upstream's breaker permit (a bug)
// gives the permit back, as on the fast engine: a half-open breaker's
// probe that never reported would keep it half-open, refusing every
// request, for good. The client, sent nothing yet, gets 500 and the
// connection closes, as from the fast engine (it was closed unanswered).
func TestLeanPanicReleasesBreakerPermit(t *testing.T) {
	panicReleasesBreakerPermit(t, func(g *Gateway) string {
		url, _ := serveLean(t, g)
		return strings.TrimPrefix(url, "http://")
	})
}

// panicReleasesBreakerPermit is TestLeanPanicReleasesBreakerPermit on the
// engine serve serves a gateway on (it returns the address).
func panicReleasesBreakerPermit(t *testing.T, serve func(*Gateway) string) {
	var answer, armed atomic.Bool
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil || !answer.Load() {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	cfg := oneUpstream(up)
	cfg.Upstreams[0].CircuitBreaker = &CircuitBreakerConfig{ErrorRate: 0.5, MinRequests: 1, Window: time.Minute,
		OpenFor: 50 * time.Millisecond, HalfOpenProbes: 1}
	cfg.Upstreams[0].Retries = &RetriesConfig{Attempts: -1}
	g, err := New(Options{Config: cfg, ResponseHeaderTimeout: 5 * time.Second,
		Logger: slog.New(panicHandler{msg: "upstream round trip failed", armed: &armed})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr := serve(g)
	get := func() (int, error) {
		c, br := dialLean(t, addr)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if s, err := get(); s != http.StatusBadGateway {
		t.Fatalf("first request: %d %v, want 502 (the breaker opens)", s, err)
	}
	time.Sleep(100 * time.Millisecond) // past OpenFor: half-open
	armed.Store(true)
	if s, err := get(); s != http.StatusInternalServerError {
		t.Fatalf("the probe that panicked: %d %v, want 500 (as the fast engine answers)", s, err)
	}
	armed.Store(false)
	answer.Store(true)
	time.Sleep(100 * time.Millisecond) // past OpenFor again
	if s, err := get(); s != http.StatusOK {
		t.Errorf("after the panic: %d %v, want 200 (a new probe)", s, err)
	}
}
