package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/config"
)

func TestConfigErrorsWithPositions(t *testing.T) {
	// The section under a root of its own, as a program's file holds it.
	type file struct {
		Gateway Config `yaml:"gateway"`
	}
	_, _, err := config.New(config.Options[file]{}).Load("testdata/bad.yaml", nil)
	want := []string{
		`testdata/bad.yaml:2:11: gateway.listen: must be host:port, got "nonsense"`,
		`testdata/bad.yaml:5:7: gateway.upstreams[0].algorithm: must be one of round-robin, weighted-round-robin, least-request, adaptive, got "random"`,
		`testdata/bad.yaml:6:43: gateway.upstreams[0].targets[0].weight: must not be negative, got -1`,
		`testdata/bad.yaml:6:57: gateway.upstreams[0].targets[1].address: must be host:port, got "nohost"`,
		`testdata/bad.yaml:7:25: gateway.upstreams[0].circuit_breaker.error_rate: must be in [0, 1], got 1.5`,
		`testdata/bad.yaml:10:15: gateway.routes[0].match.path_prefix: must start with "/", got "checkout"`,
		`testdata/bad.yaml:11:7: gateway.routes[0].upstream: no upstream named "missing"`,
		`testdata/bad.yaml:12:36: gateway.routes[0].canary.weight: must be a percentage 0..100, got 150`,
		`testdata/bad.yaml:12:57: gateway.routes[0].canary.match[0]: must set exactly one of header, cookie`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestSmoothWRRInterleaves(t *testing.T) {
	u := newUpstream(UpstreamConfig{Name: "u", Algorithm: AlgorithmWeightedRoundRobin,
		Targets: []TargetConfig{{Address: "a:1", Weight: 5}, {Address: "b:1", Weight: 1}, {Address: "c:1", Weight: 1}}}, nil)
	var seq []string
	now := time.Now()
	for range 7 {
		seq = append(seq, u.pick(now, nil).addr[:1])
	}
	// nginx's documented sequence for weights 5, 1, 1.
	if got := strings.Join(seq, ""); got != "aabacaa" {
		t.Errorf("sequence %s, want aabacaa", got)
	}
}

func TestAdaptiveShiftsAwayFromSlowTarget(t *testing.T) {
	u := newUpstream(UpstreamConfig{Name: "u", Algorithm: AlgorithmAdaptive,
		Targets: []TargetConfig{{Address: "a:1"}, {Address: "b:1"}, {Address: "c:1"}, {Address: "slow:1"}}}, nil)
	now := time.Now()
	counts := map[string]int{}
	for i := range 4000 {
		t := u.pick(now, nil)
		lat := 10 * time.Millisecond
		if t.addr == "slow:1" {
			lat = 100 * time.Millisecond
		}
		now = now.Add(time.Millisecond)
		t.observe(now, lat, false)
		if i >= 1000 {
			counts[t.addr]++
		}
	}
	share := float64(counts["slow:1"]) / 3000
	t.Logf("shares: %v", counts)
	if share > 0.02 || share == 0 {
		t.Errorf("slow target got %.4f of requests, want (0, 0.02]: bounded, never starved", share)
	}
}

func TestPanicThresholdSpreadsOverAll(t *testing.T) {
	u := newUpstream(UpstreamConfig{Name: "u", Targets: []TargetConfig{{Address: "a:1"}, {Address: "b:1"}, {Address: "c:1"}}}, nil)
	now := time.Now()
	u.targets[0].healthy.Store(false)
	if got := len(u.candidates(nil, now, nil)); got != 2 {
		t.Fatalf("%d candidates with 1 of 3 down, want 2", got)
	}
	u.targets[1].healthy.Store(false)
	if got := len(u.candidates(nil, now, nil)); got != 3 {
		t.Fatalf("%d candidates with 2 of 3 down (below panic threshold), want all 3", got)
	}
}

// Update swaps routes atomically and keeps the state of unchanged targets.
func TestUpdateKeepsTargetState(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	cfg := Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: addr(a)}}}},
		Routes:    []RouteConfig{{ID: "r", Upstream: "u"}},
	}
	g, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	get := func() string {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec.Body.String()
	}
	if got := get(); got != "a" {
		t.Fatalf("got %q", got)
	}
	ta := g.state.Load().upstreams["u"].targets[0]
	ta.ejected.Store(time.Now().Add(time.Hour).UnixNano())
	cfg.Upstreams[0].Targets = append(cfg.Upstreams[0].Targets, TargetConfig{Address: addr(b)})
	if err := g.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if g.state.Load().upstreams["u"].targets[0] != ta {
		t.Fatal("unchanged target was replaced")
	}
	for range 5 {
		if got := get(); got != "b" {
			t.Fatalf("got %q; the drained target's state was lost", got)
		}
	}
	bad := cfg
	bad.Routes = []RouteConfig{{ID: "r", Upstream: "nope"}}
	if err := g.Update(bad); err == nil {
		t.Fatal("bad config accepted")
	}
	if got := get(); got != "b" {
		t.Fatalf("after a refused update got %q", got)
	}
}

// X-Forwarded-* reach the upstream and streamed responses are flushed.
// A client's Forwarded field does not reach it on any engine: the gateway
// vouches for X-Forwarded-* only.
func TestForwardedHeadersAndStreaming(t *testing.T) {
	// The upstream writes its second chunk only once the client has read
	// the first: a gateway that buffered the body would never deliver it.
	firstRead := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Got-Host", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("X-Got-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header()["X-Got-Forwarded"] = r.Header.Values("Forwarded")
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		select {
		case <-firstRead:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "second\n")
	}))
	defer up.Close()
	cfg := Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: strings.TrimPrefix(up.URL, "http://")}}}},
		Routes:    []RouteConfig{{ID: "r", Upstream: "u"}},
	}
	g, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for engine, url := range serveBoth(t, g) {
		req, _ := http.NewRequest("GET", url+"/", nil)
		req.Host = "shop.example"
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
		req.Header.Set("forwarded", "for=192.0.2.66;proto=https")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		read := make(chan error, 1)
		go func() {
			_, err := io.ReadFull(resp.Body, buf)
			read <- err
		}()
		select {
		case err := <-read:
			if err != nil || string(buf) != "first\n" {
				t.Fatalf("%s: first chunk %q, %v", engine, buf, err)
			}
		case <-time.After(4 * time.Second):
			t.Fatalf("%s: the first chunk was not streamed ahead of the second", engine)
		}
		firstRead <- struct{}{}
		rest, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(rest) != "second\n" {
			t.Errorf("%s: rest of the body %q", engine, rest)
		}
		if got := resp.Header.Get("X-Got-For"); got != "10.0.0.1, 127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For %q", engine, got)
		}
		if got := resp.Header.Values("X-Got-Forwarded"); len(got) > 0 {
			t.Errorf("%s: the client's Forwarded reached the target: %q", engine, got)
		}
		if resp.Header.Get("X-Got-Host") != "shop.example" || resp.Header.Get("X-Got-Proto") != "http" {
			t.Errorf("%s: X-Forwarded-Host %q, -Proto %q", engine, resp.Header.Get("X-Got-Host"), resp.Header.Get("X-Got-Proto"))
		}
	}
}
