package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/internal/policytest"
)

// The in-process checker takes flow ends without a context or a deadline.
var _ LocalFlowEnder = (*controlpoint.LocalChecker)(nil)

// TestMiddlewareEndsFlows: the middleware reports each request's end, so
// a limit of one admits requests one after another, turns away a request
// that arrives while another is being served, and frees the slot of a
// handler that panics.
func TestMiddlewareEndsFlows(t *testing.T) {
	e := newEngine(t, policytest.OneSlot("ingress"))
	inside := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	block := false
	h := Middleware(controlpoint.NewLocalChecker(e), MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := block
		mu.Unlock()
		if b {
			inside <- struct{}{}
			<-release
		}
		if r.URL.Path == "/panic" {
			panic(http.ErrAbortHandler)
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			return 0 // the panicking handler's connection is cut
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 3; i++ {
		if code := get("/"); code != 200 {
			t.Fatalf("request %d one after another: %d, want 200", i, code)
		}
	}
	get("/panic")
	if code := get("/"); code != 200 {
		t.Fatalf("request after a panicking handler: %d, want 200 (its slot freed)", code)
	}
	mu.Lock()
	block = true
	mu.Unlock()
	done := make(chan int)
	go func() { done <- get("/") }()
	<-inside
	mu.Lock()
	block = false
	mu.Unlock()
	if code := get("/"); code != http.StatusServiceUnavailable {
		t.Fatalf("request while another holds the only slot: %d, want 503", code)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("the blocked request: %d", code)
	}
	if code := get("/"); code != 200 {
		t.Fatalf("request after the slot was freed: %d, want 200", code)
	}
}

// TestInterceptorEndsFlows: the gRPC interceptor reports each call's end.
func TestInterceptorEndsFlows(t *testing.T) {
	e := newEngine(t, policytest.OneSlot("ingress"))
	ic := UnaryServerInterceptor(controlpoint.NewLocalChecker(e), InterceptorOptions{})
	info := &grpc.UnaryServerInfo{FullMethod: "/svc/M"}
	for i := 0; i < 3; i++ {
		_, err := ic(context.Background(), nil, info, func(ctx context.Context, _ any) (any, error) {
			if FromContext(ctx).FlowID == 0 {
				t.Error("admitted call without a flow id")
			}
			return nil, nil
		})
		if err != nil {
			t.Fatalf("call %d one after another: %v", i, err)
		}
	}
}

// TestGuardPassesFlowEnds: a Guard around a Local passes EndFlow on.
func TestGuardPassesFlowEnds(t *testing.T) {
	e := newEngine(t, policytest.OneSlot("ingress"))
	g, err := NewGuard(controlpoint.NewLocalChecker(e), GuardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		resp, err := check(context.Background(), g, ingress())
		if err != nil || !resp.Accepted {
			t.Fatalf("check %d: %+v %v", i, resp, err)
		}
		EndFlow(g, resp, false)
	}
}
