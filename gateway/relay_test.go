package gateway

import (
	"bufio"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricOf returns the first series of the metric called name in reg, or
// nil.
func metricOf(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0]
		}
	}
	return nil
}

// eventually polls cond for up to 2 s: the gateway finishes a request just
// after the client has read its last byte.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A request lasts until its response body has been relayed, on both
// engines: it stays in flight while the target streams, and its duration
// includes the body.
func TestRequestEndsWithItsBody(t *testing.T) {
	const pause = 300 * time.Millisecond
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		time.Sleep(pause)
		io.WriteString(w, "second\n")
	}))
	defer up.Close()
	for _, engine := range engines {
		reg := prometheus.NewPedanticRegistry()
		g := proxyTo(t, up, Options{Registerer: reg})
		resp, err := http.Get(serveBoth(t, g)[engine] + "/")
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != "first\n" {
			t.Fatalf("%s: first line %q, %v", engine, line, err)
		}
		if m := metricOf(t, reg, "fluxgate_http_requests_in_flight"); m.GetGauge().GetValue() != 1 {
			t.Errorf("%s: in flight while the body streams: %v, want 1", engine, m.GetGauge().GetValue())
		}
		if m := metricOf(t, reg, "fluxgate_http_request_duration_seconds"); m.GetHistogram().GetSampleCount() != 0 {
			t.Errorf("%s: request counted finished before its body was relayed", engine)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !eventually(func() bool {
			return metricOf(t, reg, "fluxgate_http_request_duration_seconds").GetHistogram().GetSampleCount() == 1
		}) {
			t.Fatalf("%s: request never counted finished", engine)
		}
		if s := metricOf(t, reg, "fluxgate_http_request_duration_seconds").GetHistogram().GetSampleSum(); s < pause.Seconds() {
			t.Errorf("%s: duration %.3fs, want at least the body's %v", engine, s, pause)
		}
		if m := metricOf(t, reg, "fluxgate_http_requests_in_flight"); m.GetGauge().GetValue() != 0 {
			t.Errorf("%s: in flight after the body: %v", engine, m.GetGauge().GetValue())
		}
	}
}

// breakerGateway builds a Gateway whose group opens its breaker after
// three requests with failures only, for a minute.
// bodyTimeout is Options.BodyReadTimeout (0: the default).
func breakerGateway(t *testing.T, up *httptest.Server, reg *prometheus.Registry, bodyTimeout time.Duration) *Gateway {
	t.Helper()
	cfg := oneUpstream(strings.TrimPrefix(up.URL, "http://"))
	cfg.Upstreams[0].CircuitBreaker = &CircuitBreakerConfig{ErrorRate: 0.5, MinRequests: 3, OpenFor: time.Minute, HalfOpenProbes: 1}
	g, err := New(Options{Config: cfg, Registerer: reg, BodyReadTimeout: bodyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// A target that breaks off its response body mid-way has failed that
// request, on both engines: three such answers open the breaker, and
// the requests leave nothing in flight.
func TestTruncatedBodyCountsAgainstTheTarget(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		_ = brw.Flush()
		conn.Close()
	}))
	defer up.Close()
	for _, engine := range engines {
		reg := prometheus.NewPedanticRegistry()
		url := serveBoth(t, breakerGateway(t, up, reg, 0))[engine] + "/"
		for i := range 3 {
			// net/http aborts the connection, before the headers when
			// they were still buffered; the fast engine sends what came.
			resp, err := http.Get(url)
			if err != nil {
				continue
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: request %d: status %d before the breaker opened", engine, i, resp.StatusCode)
			}
			if _, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("%s: request %d: the truncated body read as complete", engine, i)
			}
			resp.Body.Close()
		}
		var status int
		eventually(func() bool {
			status = 0 // a truncated answer still
			if resp, err := http.Get(url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			return status == http.StatusServiceUnavailable
		})
		if status != http.StatusServiceUnavailable {
			t.Errorf("%s: after three truncated bodies got %d, want 503 breaker_open", engine, status)
		}
		if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
			t.Errorf("%s: requests left in flight: %v", engine, metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue())
		}
	}
}

// A client that leaves while the body streams says nothing of the
// target: its breaker stays closed however many do.
func TestClientLeavingMidBodySparesTheTarget(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "ok")
			return
		}
		chunk := strings.Repeat("x", 64<<10)
		rc := http.NewResponseController(w)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}))
	defer up.Close()
	for _, engine := range engines {
		reg := prometheus.NewPedanticRegistry()
		base := serveBoth(t, breakerGateway(t, up, reg, 0))[engine]
		for i := range 4 {
			tr := &http.Transport{}
			resp, err := (&http.Client{Transport: tr}).Get(base + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
				t.Fatalf("%s: request %d: %v", engine, i, err)
			}
			resp.Body.Close() // mid-body: the connection closes
			tr.CloseIdleConnections()
		}
		if !eventually(func() bool { return metricOf(t, reg, "fluxgate_http_requests_in_flight").GetGauge().GetValue() == 0 }) {
			t.Fatalf("%s: abandoned requests never finished", engine)
		}
		resp, err := http.Get(base + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: after clients left mid-body got %d; the breaker blamed the target", engine, resp.StatusCode)
		}
	}
}

// A target's trailers reach the client after the body, on both engines.
func TestTrailersPassThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum, X-Count")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Add("X-Count", "1")
		w.Header().Add("X-Count", "2")
	}))
	defer up.Close()
	for engine, url := range serveBoth(t, proxyTo(t, up, Options{})) {
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "body" {
			t.Fatalf("%s: body %q, %v", engine, b, err)
		}
		if got := resp.Trailer.Get("X-Checksum"); got != "abc" {
			t.Errorf("%s: trailer X-Checksum %q, want abc (trailers %v)", engine, got, resp.Trailer)
		}
		if got := resp.Trailer.Values("X-Count"); strings.Join(got, ",") != "1,2" {
			t.Errorf("%s: trailer X-Count %q, want [1 2]", engine, got)
		}
	}
}

// rawUpstream answers every request with the bytes of resp and closes the
// connection.
func rawUpstream(t *testing.T, resp string) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString(resp)
		_ = brw.Flush()
		conn.Close()
	}))
	t.Cleanup(up.Close)
	return up
}

// The fast engine relays a target's response without a Content-Type as
// it came, without inventing one.
func TestResponseWithoutContentType(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
	url := serveFast(t, proxyTo(t, up, Options{}))
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, url+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Values("Content-Type"); len(ct) != 0 {
			t.Errorf("%s: Content-Type %q added", method, ct)
		}
	}
}

// A body the target ends by closing its connection reaches the client
// whole, and the client's connection stays open, on both engines.
func TestCloseDelimitedBody(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\n\r\nhello")
	for engine, url := range serveBoth(t, proxyTo(t, up, Options{})) {
		tr := &http.Transport{}
		c := &http.Client{Transport: tr}
		reused := false
		for i := range 2 {
			req, _ := http.NewRequest("GET", url+"/", nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
			}))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "hello" {
				t.Fatalf("%s: body %q, %v", engine, b, err)
			}
			if resp.Close {
				t.Errorf("%s: the gateway closes the client's connection", engine)
			}
			if i == 1 && !reused {
				t.Errorf("%s: the second request did not reuse the connection", engine)
			}
		}
		tr.CloseIdleConnections()
	}
}

// A route to an HTTP/2 group is handed from the fast engine to net/http;
// a body the target breaks off still reaches the client as broken, not as
// a shorter complete one.
func TestHandedOverTruncatedBody(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "0123456789")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // resets the stream
	}))
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	up.Config.Protocols = p
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.Start()
	defer up.Close()
	cfg := oneUpstream(strings.TrimPrefix(up.URL, "http://"))
	cfg.Upstreams[0].HTTP2 = true
	g, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	resp, err := http.Get(serveFast(t, g) + "/")
	if err != nil {
		return // cut before the headers: broken, as it should be
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("a broken-off body read as complete: %q", b)
	}
}
