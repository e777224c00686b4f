package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/gateway"
)

// A plain listener runs on the loop engine on Linux (the lean engine
// elsewhere) unless gateway.engine asks for the lean or fast one, or
// net/http; each proxies the same. An unknown engine is refused.
func TestEngineChoice(t *testing.T) {
	b := newBackend(t, "a")
	auto := gateway.EngineLean
	if runtime.GOOS == "linux" {
		auto = gateway.EngineLoop
	}
	for engine, want := range map[string]string{"": auto, gateway.EngineAuto: auto, gateway.EngineFast: "fast", gateway.EngineLean: "lean", gateway.EngineNet: "net", gateway.EngineLoop: "loop"} {
		cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
		cfg.Engine = engine
		s := startStack(t, cfg, nil, gateway.ServiceOptions{})
		if got := s.svc.Engine(); got != want {
			t.Errorf("engine %q: serving on %q, want %q", engine, got, want)
		}
		if st, backend := s.get(t, "/", nil); st != 200 || backend != "a" {
			t.Errorf("engine %q: got %d from %q", engine, st, backend)
		}
	}
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.Engine = "nginx"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "engine") {
		t.Errorf("engine nginx validated: %v", err)
	}
}

// Stop lets a request in flight finish within its grace period; past it,
// Stop returns and the connections are closed, on every engine.
func TestStopGraceAndDeadline(t *testing.T) {
	for _, engine := range []string{gateway.EngineAuto, gateway.EngineFast, gateway.EngineNet, gateway.EngineLoop} {
		b := newBackend(t, "a")
		cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
		cfg.Engine = engine
		for _, tc := range []struct {
			delay, grace time.Duration
			wantOK       bool
		}{
			{200 * time.Millisecond, 5 * time.Second, true},
			{3 * time.Second, 200 * time.Millisecond, false},
		} {
			s := startStack(t, cfg, nil, gateway.ServiceOptions{})
			b.delay.Store(int64(tc.delay))
			got := make(chan int, 1)
			go func() {
				resp, err := s.hc.Get(s.url + "/")
				if err != nil {
					got <- 0
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got <- resp.StatusCode
			}()
			time.Sleep(50 * time.Millisecond) // in flight
			ctx, cancel := context.WithTimeout(context.Background(), tc.grace)
			start := time.Now()
			err := s.svc.Stop(ctx)
			cancel()
			took := time.Since(start)
			status := <-got
			if tc.wantOK && (err != nil || status != 200) {
				t.Errorf("%s: stop with %s grace: %v; the request in flight got %d, want 200", engine, tc.grace, err, status)
			}
			if !tc.wantOK && (err == nil || took > tc.grace+time.Second || status == 200) {
				t.Errorf("%s: stop past its %s grace returned %v after %s; the request got %d", engine, tc.grace, err, took, status)
			}
		}
	}
}

// Clients that abandon their uploads halfway do not count against the
// target: its breaker stays closed and outlier detection keeps it, on
// either engine. (Otherwise anyone could trip a healthy target's breaker.)
func TestAbandonedUploadsSpareTheTarget(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return // the body broke off
			}
			io.WriteString(w, "ok")
		}))
		t.Cleanup(up.Close)
		u := gateway.UpstreamConfig{Name: "svc", Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(up.URL, "http://")}},
			CircuitBreaker:   &gateway.CircuitBreakerConfig{ErrorRate: 0.5, MinRequests: 5, OpenFor: time.Minute, HalfOpenProbes: 1},
			OutlierDetection: &gateway.OutlierDetectionConfig{ErrorRate: 0.1, MinRequests: 5, Window: time.Minute, EjectFor: time.Minute}}
		h := start(t, engine, oneRoute(u), nil)
		for range 8 {
			conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("x", 64<<10))
			time.Sleep(20 * time.Millisecond) // the upload is under way
			conn.Close()
		}
		time.Sleep(100 * time.Millisecond) // the gateway notices
		if b := h.breaker("svc"); b != "closed" {
			t.Errorf("breaker %s after abandoned uploads, want closed", b)
		}
		if st := h.target(t, "svc", strings.TrimPrefix(up.URL, "http://")); st.Ejected {
			t.Errorf("target ejected after abandoned uploads: %+v", st)
		}
		if st, _ := h.get(t, "/", nil); st != 200 {
			t.Errorf("a whole request afterwards got %d", st)
		}
	})
}
