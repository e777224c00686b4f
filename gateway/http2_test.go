package gateway

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/internal/h2"
)

// ownHTTP2 makes a lean server hand HTTP/2 to the gateway's own server,
// as Service.Start does with gateway.http2.server lean.
func ownHTTP2(g *Gateway) func(*LeanServer) {
	return func(ls *LeanServer) { ls.ServeHTTP2With(g.NewHTTP2Server(nil)) }
}

// h2Client is net/http's client speaking HTTP/2 only over TLS.
func h2Client(t *testing.T, ccfg *tls.Config) *http.Client {
	cfg := ccfg.Clone()
	cfg.NextProtos = nil
	tr := &http.Transport{TLSClientConfig: cfg, Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h2Answer is what a test compares of an answer.
type h2Answer struct {
	status  int
	proto   string
	header  http.Header
	body    string
	trailer http.Header
}

func (a h2Answer) String() string {
	return fmt.Sprintf("%d %s %v body %.80q trailer %v", a.status, a.proto, a.header, a.body, a.trailer)
}

// TestHTTP2ServersAgree: through the gateway, the requests below come back
// from its own HTTP/2 server as from net/http's, and the upstream sees
// them alike; the control point gets scheme https from both.
func TestHTTP2ServersAgree(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Up-Saw", fmt.Sprintf("%s %s %s cl=%d xfp=%s cookie=%s", r.Method, r.URL.RequestURI(), r.Proto, r.ContentLength, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Cookie")))
		if r.URL.Path == "/trailers" {
			w.Header().Set("Trailer", "X-Sum")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = w.Write(b)
		_, _ = io.WriteString(w, "|answered")
		if r.URL.Path == "/trailers" {
			w.Header().Set("X-Sum", fmt.Sprint(len(b)))
		}
	}))
	defer up.Close()
	rec := &labelRecorder{}
	g := proxyTo(t, up, Options{Checker: rec})
	ownAddr, _, ccfg := serveLeanTLS(t, g, ownHTTP2(g), nil)
	netAddr, _, _ := serveLeanTLS(t, g, nil, nil)
	loopAddr, loopCfg := loopH2Addr(t, g)
	c := h2Client(t, ccfg)
	big := strings.Repeat("0123456789", 100<<10) // 1 MB
	type request struct {
		method, path, body string
		cookies            []string
	}
	ask := func(c *http.Client, addr string, rq request) h2Answer {
		t.Helper()
		var body io.Reader
		if rq.body != "" {
			body = strings.NewReader(rq.body)
		}
		req, _ := http.NewRequest(rq.method, "https://"+addr+rq.path, body)
		for _, ck := range rq.cookies {
			req.Header.Add("Cookie", ck)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", rq.method, rq.path, err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		res.Header.Del("Date")
		return h2Answer{res.StatusCode, res.Proto, res.Header, string(b), res.Trailer}
	}
	for _, rq := range []request{
		{method: "GET", path: "/a/b?c=d&e=%20"},
		{method: "GET", path: "/", cookies: []string{"a=1", "b=2"}},
		{method: "POST", path: "/post", body: "hello"},
		{method: "POST", path: "/post", body: big[:5<<10]},
		{method: "PUT", path: "/big", body: big},
		{method: "HEAD", path: "/head"},
		{method: "GET", path: "/missing"},
		{method: "POST", path: "/trailers", body: "abc"},
	} {
		own, net := ask(c, ownAddr, rq), ask(c, netAddr, rq)
		if own.proto != "HTTP/2.0" {
			t.Fatalf("%s %s answered over %s", rq.method, rq.path, own.proto)
		}
		if own.status != net.status || own.body != net.body || !headersEqual(own.header, net.header) || !headersEqual(own.trailer, net.trailer) {
			t.Errorf("%s %s:\nown: %v\nnet: %v", rq.method, rq.path, own, net)
		}
		if loopAddr == "" {
			continue
		}
		if loop := ask(h2Client(t, loopCfg), loopAddr, rq); loop.proto != "HTTP/2.0" || loop.status != net.status || loop.body != net.body || !headersEqual(loop.header, net.header) || !headersEqual(loop.trailer, net.trailer) {
			t.Errorf("%s %s:\nloop: %v\nnet:  %v", rq.method, rq.path, loop, net)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, l := range rec.labels {
		if l[flow.LabelURLScheme] != "https" {
			t.Errorf("control point saw scheme %q, want https", l[flow.LabelURLScheme])
		}
	}
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// The gateway's HTTP/2 server counts what it refuses in
// fluxgate_gateway_http2_protocol_errors_total.
func TestHTTP2ProtocolErrorsCounted(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	addr, _, ccfg := serveLeanTLS(t, g, ownHTTP2(g), nil)
	fr := rawH2(t, addr, ccfg)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"}, {Name: ":path", Value: "/"}, {Name: "connection", Value: "close"}} {
		_ = enc.WriteField(f)
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			if r.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", r.ErrCode)
			}
			break
		}
	}
	if n := testutil.ToFloat64(g.metrics.h2errors.WithLabelValues(h2.ReasonMalformedRequest)); n != 1 {
		t.Errorf("malformed_request counted %v times, want 1", n)
	}
}

// As TestLeanTLSShutdownCutsStalledH2, with the gateway's HTTP/2 server:
// when the context ends, Shutdown returns with the connection closed,
// though its client does not read.
func TestHTTP2ShutdownCutsStalled(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	wrap, conns := stallConns()
	addr, ls, ccfg := serveLeanTLS(t, g, ownHTTP2(g), wrap)
	resp, err := h2Client(t, ccfg).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
	}
	sc := <-conns
	sc.stalled.Store(true)
	_ = shutdownPastStall(t, ls, sc)
}
