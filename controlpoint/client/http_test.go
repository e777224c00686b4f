package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/fluxmeter"
)

func TestMiddlewareLocalAdmitsFiveThen429(t *testing.T) {
	e := newEngine(t, perUserLimit)
	var served int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		if FromContext(r.Context()) == nil {
			t.Error("handler: no decision in context")
		}
		io.WriteString(w, "ok")
	})
	h := Middleware(controlpoint.NewLocalChecker(e), MiddlewareOptions{
		Labels: func(r *http.Request) map[string]string {
			return map[string]string{"user": r.Header.Get("X-User")}
		},
	})(next)
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(user, tier string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/items", nil)
		req.Header.Set("X-User", user)
		req.Header.Set("Baggage", "tier="+tier) // labels from baggage, via flow.RequestLabels
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for i := range 5 {
		resp := get("alice", "free")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d, want 200", i+1, resp.StatusCode)
		}
		if got, want := resp.Header.Get("RateLimit-Remaining"), fmt.Sprint(4-i); got != want || resp.Header.Get("X-FluxGate-Decision") != "accepted" {
			t.Fatalf("request %d: decision %q, RateLimit-Remaining %q want %q", i+1, resp.Header.Get("X-FluxGate-Decision"), got, want)
		}
	}
	resp := get("alice", "free")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th request: status %d, want 429", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"X-FluxGate-Decision":  "rejected",
		"X-FluxGate-Reason":    "rate_limited",
		"X-FluxGate-Policy":    "default/per-user-limit",
		"X-FluxGate-Component": "0",
		"Retry-After":          "12",
		"RateLimit-Limit":      "5",
		"RateLimit-Remaining":  "0",
		"Content-Type":         "application/json",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("6th request: %s = %q, want %q", k, got, want)
		}
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"error": "rate_limited", "policy": "default/per-user-limit", "retry_after_seconds": float64(12)}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Fatalf("body = %v, want %v", body, want)
	}
	if served != 5 {
		t.Fatalf("handler ran %d times, want 5", served)
	}
	// Another user has their own bucket; the paid tier is not limited.
	if s := get("bob", "free").StatusCode; s != 200 {
		t.Fatalf("bob: status %d", s)
	}
	for range 10 {
		if s := get("carol", "paid").StatusCode; s != 200 {
			t.Fatalf("carol (paid): status %d", s)
		}
	}
}

func TestMiddlewareFluxMetersInContext(t *testing.T) {
	const withMeter = perUserLimit + `  resources:
    flux_meters:
      latency:
        selectors: [{control_point: ingress}]
`
	e := newEngine(t, withMeter)
	var got []string
	h := Middleware(controlpoint.NewLocalChecker(e), MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = slices.Clone(FromContext(r.Context()).FluxMeters)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || fmt.Sprint(got) != "[default/per-user-limit/latency]" {
		t.Fatalf("status %d, flux meters %v", rec.Code, got)
	}
	if FromContext(context.Background()) != nil {
		t.Fatal("FromContext of a bare context is not nil")
	}
}

func TestMiddlewareControlPointAndTokens(t *testing.T) {
	var seen flow.Request
	c := checkerFunc(func(ctx context.Context, req *flow.Request, d *flow.Decision) error {
		seen = *req
		return accept(ctx, req, d)
	})
	h := Middleware(c, MiddlewareOptions{ControlPoint: "checkout", Tokens: func(*http.Request) float64 { return 3 }})(http.NotFoundHandler())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/pay?x=1", nil))
	if seen.ControlPoint != "checkout" || seen.Tokens != 3 || seen.Labels["http.method"] != "POST" || seen.Labels["http.target"] != "/pay?x=1" {
		t.Fatalf("check request = %v", seen)
	}
	h = Middleware(c, MiddlewareOptions{})(http.NotFoundHandler())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if seen.ControlPoint != "ingress" || seen.Tokens != 0 {
		t.Fatalf("default check request = %v", seen)
	}
}

func TestMiddlewareCheckerError(t *testing.T) {
	c := checkerFunc(func(context.Context, *flow.Request, *flow.Decision) error {
		return errors.New("boom")
	})
	h := Middleware(c, MiddlewareOptions{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("handler ran after a failed check")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 || rec.Body.String() != `{"error":"check_failed"}`+"\n" {
		t.Fatalf("status %d body %q", rec.Code, rec.Body)
	}
}

// A client that disconnects cancels the check in flight, through a Guard
// whose own deadline is far away; the handler never runs.
func TestMiddlewareClientDisconnectCancelsCheck(t *testing.T) {
	entered := make(chan struct{})
	checkErr := make(chan error, 1)
	hang := checkerFunc(func(ctx context.Context, _ *flow.Request, _ *flow.Decision) error {
		close(entered)
		<-ctx.Done()
		checkErr <- ctx.Err()
		return ctx.Err()
	})
	g := newGuard(t, hang, GuardOptions{Timeout: 10 * time.Second, FailureMode: FailOpen})
	handlerRan := make(chan struct{}, 1)
	srv := httptest.NewServer(Middleware(g, MiddlewareOptions{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		handlerRan <- struct{}{}
	})))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("check never started")
	}
	cancel()
	<-done
	select {
	case err := <-checkErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("checker saw %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client disconnect did not cancel the check")
	}
	srv.Close() // waits for the handler to return
	select {
	case <-handlerRan:
		t.Fatal("handler ran for a client that disconnected")
	default:
	}
}

func BenchmarkMiddlewareLocal(b *testing.B) {
	const roomy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: roomy, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {tier: free}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 1e15}}
              fill_amount: {constant_signal: {value: 1e15}}
            parameters: {limit_by_label_key: user, interval: 1s}
`
	e := newEngine(b, roomy)
	h := Middleware(controlpoint.NewLocalChecker(e), MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	req := httptest.NewRequest("GET", "/items/42?page=2", nil)
	req.Header.Set("Baggage", "user=alice,tier=free")
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// flowsSeen collects the flows a Middleware reports.
type flowsSeen []fluxmeter.Flow

func (f *flowsSeen) Observe(fl fluxmeter.Flow) { *f = append(*f, fl) }

// A handler that panics still reports its flow: with the status it had
// sent, or 500 when it had sent none.
func TestMiddlewareRecordsPanickingHandlers(t *testing.T) {
	admit := checkerFunc(accept)
	for _, c := range []struct {
		name   string
		status int // written before the panic; 0: none
		want   int
	}{{"before answering", 0, 500}, {"mid-body", 200, 200}} {
		var seen flowsSeen
		h := Middleware(admit, MiddlewareOptions{Flows: &seen})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.status != 0 {
				w.WriteHeader(c.status)
			}
			panic(http.ErrAbortHandler)
		}))
		func() {
			defer func() {
				p := recover()
				if err, _ := p.(error); !errors.Is(err, http.ErrAbortHandler) {
					t.Errorf("%s: panic %v did not reach the server", c.name, p)
				}
			}()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
		}()
		if len(seen) != 1 || seen[0].Status != c.want {
			t.Errorf("%s: flows %+v, want one with status %d", c.name, seen, c.want)
		}
	}
}
