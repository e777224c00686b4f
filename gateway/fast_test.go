package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serveFast serves g on the fast engine on a loopback port until the test
// ends.
func serveFast(t *testing.T, g *Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := g.NewFastServer(nil)
	done := make(chan struct{})
	go func() { _ = fs.Serve(FastListener(ln)); close(done) }()
	t.Cleanup(func() { _ = fs.Shutdown(); <-done })
	return "http://" + ln.Addr().String()
}

// engines are the server engines every engine test runs on.
var engines = []string{"net", "fast", "lean"}

// serveLean serves g on the lean engine on a loopback port until the test
// ends.
func serveLean(t *testing.T, g *Gateway) (string, *LeanServer) {
	t.Helper()
	return serveLeanWith(t, g, nil)
}

// serveLeanWith is serveLean with the server set up by setup first.
func serveLeanWith(t *testing.T, g *Gateway, setup func(*LeanServer)) (string, *LeanServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := g.NewLeanServer(nil)
	if setup != nil {
		setup(ls)
	}
	done := make(chan struct{})
	go func() { _ = ls.Serve(ln); close(done) }()
	t.Cleanup(func() {
		_ = ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ls.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String(), ls
}

// serveBoth serves g on every engine until the test ends and returns
// their URLs by engine.
func serveBoth(t *testing.T, g *Gateway) map[string]string {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	lean, _ := serveLean(t, g)
	urls := map[string]string{"net": srv.URL, "fast": serveFast(t, g), "lean": lean}
	if loop := serveLoopAddr(t, g); loop != "" {
		urls["loop"] = "http://" + loop
	}
	return urls
}

// proxyTo builds a Gateway with opts and one route to up, closed when the
// test ends.
func proxyTo(t *testing.T, up *httptest.Server, opts Options) *Gateway {
	t.Helper()
	opts.Config = oneUpstream(strings.TrimPrefix(up.URL, "http://"))
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// startTarget starts up, over TLS when tlsOn, and points opts at it as
// the one upstream group (trusting its certificate).
func startTarget(up *httptest.Server, tlsOn bool, opts *Options) {
	if tlsOn {
		up.StartTLS()
		pool := x509.NewCertPool()
		pool.AddCert(up.Certificate())
		opts.UpstreamTLSConfig = &tls.Config{RootCAs: pool}
	} else {
		up.Start()
	}
	opts.Config = oneUpstream(strings.TrimPrefix(strings.TrimPrefix(up.URL, "https://"), "http://"))
	opts.Config.Upstreams[0].TLS = tlsOn
}

func oneUpstream(addr string) Config {
	return Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: addr}}}},
		Routes:    []RouteConfig{{ID: "r", Upstream: "u"}},
	}
}

// A target that sends nothing is given up after ResponseHeaderTimeout
// with 504, on both engines.
func TestResponseHeaderTimeout(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		release := make(chan struct{})
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		opts := Options{ResponseHeaderTimeout: 200 * time.Millisecond}
		// TLS 1.3: the server's session tickets reach the gateway before
		// any answer; they must not count as one.
		startTarget(up, tlsOn, &opts)
		g, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 5 * time.Second}
		for engine, url := range serveBoth(t, g) {
			resp, err := client.Get(url + "/")
			if err != nil {
				t.Fatalf("tls=%v %s: %v", tlsOn, engine, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("X-FluxGate-Reason") != "upstream_timeout" {
				t.Errorf("tls=%v %s: status %d reason %q, want 504 upstream_timeout", tlsOn, engine, resp.StatusCode, resp.Header.Get("X-FluxGate-Reason"))
			}
		}
		close(release)
		g.Close()
		up.Close()
	}
}

// Hop-by-hop headers stop at the gateway both ways, with those the
// Connection header lists; the target closing its connection does not
// close the client's.
func TestHopByHopHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got []string
		for _, h := range []string{"X-Secret", "Keep-Alive", "Te", "Proxy-Authorization", "X-Kept"} {
			if r.Header.Get(h) != "" {
				got = append(got, h)
			}
		}
		// Raw, as a Go server would rewrite its Connection header.
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		connection := "X-Private" // net/http's client drops a Connection header that says close
		if r.URL.Path == "/close" {
			connection = "close"
		}
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nX-Upstream-Saw: %s\r\nConnection: %s\r\n"+
			"X-Private: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", strings.Join(got, ","), connection)
		_ = brw.Flush()
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	for engine, url := range serveBoth(t, g) {
		tr := &http.Transport{}
		c := &http.Client{Transport: tr}
		reused := 0
		for i, path := range []string{"/", "/close", "/"} {
			req, _ := http.NewRequest("GET", url+path, nil)
			req.Header.Set("Connection", "X-Secret")
			req.Header.Set("X-Secret", "s")
			req.Header.Set("Keep-Alive", "timeout=5")
			req.Header.Set("Te", "gzip")
			req.Header.Set("Proxy-Authorization", "Basic eA==")
			req.Header.Set("X-Kept", "1")
			trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
				if ci.Reused {
					reused++
				}
			}}
			resp, err := c.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
			if err != nil {
				t.Fatalf("%s: %v", engine, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get("X-Upstream-Saw"); got != "X-Kept" {
				t.Errorf("%s #%d: upstream saw %q, want only X-Kept", engine, i, got)
			}
			if (path == "/" && resp.Header.Get("X-Private") != "") || resp.Header.Get("Keep-Alive") != "" || resp.Close {
				t.Errorf("%s #%d: client got X-Private %q Keep-Alive %q close %v", engine, i,
					resp.Header.Get("X-Private"), resp.Header.Get("Keep-Alive"), resp.Close)
			}
		}
		tr.CloseIdleConnections()
		if reused != 2 {
			t.Errorf("%s: client connection reused %d times of 2", engine, reused)
		}
	}
}

// A request body larger than the fast engine's buffers streams to the
// target whole, and the target's large answer streams back.
func TestLargeBodies(t *testing.T) {
	const size = 9 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Got", fmt.Sprintf("%d %x", n, h.Sum(nil)))
		_, _ = io.Copy(w, io.LimitReader(zeros{}, size))
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("%d %x", size, sum[:])
	for engine, url := range serveBoth(t, g) {
		for _, chunked := range []bool{false, true} {
			var r io.Reader = bytes.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // hides the length: chunked encoding
			}
			resp, err := http.Post(url+"/upload", "application/octet-stream", r)
			if err != nil {
				t.Fatalf("%s: %v", engine, err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Got") != want || n != size {
				t.Errorf("%s chunked=%v: status %d, target got %q (want %q), client got %d bytes",
					engine, chunked, resp.StatusCode, resp.Header.Get("X-Got"), want, n)
			}
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// An Upgrade request reaching the fast engine is passed to the net/http
// engine, which hands the connection over: bytes flow both ways.
func TestUpgradePassThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		echoUpgrade(w, "echo: ")
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	for engine, url := range serveBoth(t, g) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", engine, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s: status %d, want 101", engine, resp.StatusCode)
		}
		fmt.Fprintf(conn, "hello\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo: hello\n" {
			t.Errorf("%s: read %q, %v", engine, line, err)
		}
		conn.Close()
	}
}

// A request no route matches gets 404 {"error":"no_route"}; HEAD answers
// carry no body.
func TestNoRouteAndHead(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		if r.Method != http.MethodHead {
			io.WriteString(w, "hello")
		}
	}))
	defer up.Close()
	cfg := oneUpstream(strings.TrimPrefix(up.URL, "http://"))
	cfg.Routes[0].Match.PathPrefix = "/api"
	g, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for engine, url := range serveBoth(t, g) {
		resp, err := http.Get(url + "/other")
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || body["error"] != "no_route" {
			t.Errorf("%s: unrouted request got %d %v", engine, resp.StatusCode, body)
		}
		resp, err = http.Head(url + "/api")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != 5 || n != 0 {
			t.Errorf("%s: HEAD got %d, Content-Length %d, %d body bytes", engine, resp.StatusCode, resp.ContentLength, n)
		}
	}
}

// Request metrics count every request on its route, target, method and
// status; methods outside the standard ones share the _OTHER label, so
// clients cannot mint series.
func TestRequestMetrics(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer up.Close()
	target := strings.TrimPrefix(up.URL, "http://")
	for _, engine := range engines {
		reg := prometheus.NewPedanticRegistry()
		g := proxyTo(t, up, Options{Registerer: reg})
		url := serveBoth(t, g)[engine]
		send := func(method, path string, n int) {
			for range n {
				req, _ := http.NewRequest(method, url+path, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		send("GET", "/", 3)
		send("GET", "/missing", 2)
		send("BREW", "/", 4)
		send("X-ANYTHING-"+engine, "/", 1)
		want := map[string]float64{"GET/200": 3, "GET/404": 2, "_OTHER/200": 5}
		got := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "fluxgate_http_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				if l["route_id"] != "r" || l["upstream_host"] != target {
					t.Errorf("%s: series %v", engine, l)
				}
				got[l["method"]+"/"+l["status"]] += m.GetCounter().GetValue()
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: fluxgate_http_requests_total by method/status %v, want %v", engine, got, want)
		}
	}
}

// connectionListed never panics, and never names close, keep-alive, a
// framing field, an empty header or one with a comma or surrounding
// blanks.
func FuzzConnectionListed(f *testing.F) {
	for _, s := range []string{"", "close", "Keep-Alive, X-Secret", " , ,X-A,\tX-B ,close", "upgrade", "content-length, Host,TRANSFER-ENCODING"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, name := range connectionListed(nil, []byte(v)) {
			if name == "" || strings.EqualFold(name, "close") || strings.EqualFold(name, "keep-alive") ||
				strings.EqualFold(name, "content-length") || strings.EqualFold(name, "transfer-encoding") || strings.EqualFold(name, "host") ||
				strings.Contains(name, ",") || strings.Trim(name, " \t") != name {
				t.Fatalf("connectionListed(%q) named %q", v, name)
			}
		}
	})
}

// Requests a client can send that once tripped the fast engine: many
// Expect lines, headers of 20 KB, HTTP/1.0, X-Forwarded-For on several
// lines. Each is proxied as on net/http: HTTP/1.1 upstream, XFF joined.
func TestUnusualRequests(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-Got-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Big-Len", strconv.Itoa(len(r.Header.Get("X-Big"))))
		w.Header().Set("X-Echo-Big", r.Header.Get("X-Big")[:min(len(r.Header.Get("X-Big")), 12<<10)])
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	big := strings.Repeat("b", 20<<10)
	for engine, url := range serveBoth(t, g) {
		raw := func(req string) *http.Response {
			t.Helper()
			conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("%s: %q: %v", engine, req[:min(len(req), 60)], err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		if resp := raw("GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("Expect: x\r\n", 12) + "\r\n"); resp.StatusCode >= 500 {
			t.Errorf("%s: 12 Expect lines: %d", engine, resp.StatusCode)
		}
		if resp := raw("GET / HTTP/1.0\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || resp.Header.Get("X-Proto") != "HTTP/1.1" {
			t.Errorf("%s: HTTP/1.0 client: %d, upstream saw %q", engine, resp.StatusCode, resp.Header.Get("X-Proto"))
		}
		resp := raw("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Big: " + big + "\r\nConnection: close\r\n\r\n")
		if got := resp.Header.Get("X-Got-For"); got != "10.0.0.1, 10.0.0.2, 127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For on two lines became %q", engine, got)
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Big-Len") != strconv.Itoa(len(big)) || len(resp.Header.Get("X-Echo-Big")) != 12<<10 {
			t.Errorf("%s: 20 KB request header: %d, upstream saw %q bytes, %d bytes came back", engine,
				resp.StatusCode, resp.Header.Get("X-Big-Len"), len(resp.Header.Get("X-Echo-Big")))
		}
	}
}

// Routing matches the path the target receives, on both engines: dot
// segments are not resolved away and percent-escapes are decoded.
func TestRoutingSeesTheForwardedPath(t *testing.T) {
	seen := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			w.Header().Set("X-Path", r.URL.EscapedPath())
		}))
	}
	public, admin := seen("public"), seen("admin")
	defer public.Close()
	defer admin.Close()
	cfg := Config{
		Upstreams: []UpstreamConfig{
			{Name: "public", Targets: []TargetConfig{{Address: strings.TrimPrefix(public.URL, "http://")}}},
			{Name: "admin", Targets: []TargetConfig{{Address: strings.TrimPrefix(admin.URL, "http://")}}},
		},
		Routes: []RouteConfig{
			{ID: "admin", Match: RouteMatch{PathPrefix: "/admin"}, Upstream: "admin"},
			{ID: "public", Match: RouteMatch{PathPrefix: "/"}, Upstream: "public"},
		},
	}
	g, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for engine, url := range serveBoth(t, g) {
		for path, want := range map[string]string{
			"/public/../admin/x": "public", // forwarded as is: the public target resolves it
			"/%61dmin/x":         "admin",  // decodes to /admin/x
			"/admin/x":           "admin",
		} {
			conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			conn.Close()
			if err != nil {
				t.Fatalf("%s %s: %v", engine, path, err)
			}
			if got := resp.Header.Get("X-Backend"); got != want {
				t.Errorf("%s: %s went to %q (target saw %q), want %q", engine, path, got, resp.Header.Get("X-Path"), want)
			}
		}
	}
}

// A request body without a Content-Type reaches the target without one,
// and one with a Content-Type keeps it, on both engines.
func TestRequestContentTypeKept(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s|%s|%d", r.Header.Values("Content-Type"), b, len(r.Header.Values("Content-Type")))
	}))
	defer up.Close()
	for engine, url := range serveBoth(t, proxyTo(t, up, Options{})) {
		for _, c := range []struct{ contentType, want string }{
			{"", "[]|data|0"},
			{"text/csv", "[text/csv]|data|1"},
		} {
			req, _ := http.NewRequest("POST", url+"/", strings.NewReader("data"))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != c.want {
				t.Errorf("%s: Content-Type %q: target saw %q, want %q", engine, c.contentType, got, c.want)
			}
		}
	}
}

// echoUpgrade switches w's connection to the "echo" protocol (101) and
// answers the first line the client sends after it with prefix before it.
func echoUpgrade(w http.ResponseWriter, prefix string) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	_ = brw.Flush()
	line, err := brw.ReadString('\n')
	if err != nil {
		return
	}
	_, _ = brw.WriteString(prefix + line)
	_ = brw.Flush()
}
