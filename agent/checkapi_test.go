package agent

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/controlpointtest"
)

// The per-user limit of issue 3, verbatim.
const perUserLimitYAML = controlpointtest.PerUserLimit

// startCheckAgent starts an agent that serves the check API.
func startCheckAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

func TestCheckAPI(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "per-user-limit.yaml"), perUserLimitYAML)
	a := startCheckAgent(t, testConfig(dir))
	conn, err := grpc.NewClient(a.Addr(ListenerGRPC).String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// alice: 5 over JSON, then the gRPC check service rejects the 6th.
	body := `{"control_point":"ingress","labels":{"user":"alice","tier":"free"}}`
	for i := range 5 {
		r := doRequest(t, "POST", a.testURL("/v1/check"), body, map[string]string{"Content-Type": "application/json"})
		if r.code != 200 || !strings.Contains(r.body, `"decision_type":"DECISION_TYPE_ACCEPTED"`) {
			t.Fatalf("JSON check %d = %d %s", i, r.code, r.body)
		}
	}
	resp, err := pb.NewFlowControlServiceClient(conn).Check(ctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "alice", "tier": "free"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRejectReason() != pb.RejectReason_REJECT_REASON_RATE_LIMITED || resp.GetLimiterDecisions()[0].GetPolicyName() != "per-user-limit" {
		t.Fatalf("gRPC check = %v", resp)
	}
	if _, err := pb.NewFlowControlServiceClient(conn).Check(ctx, &pb.CheckRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed gRPC check: %v", err)
	}
	if r := doRequest(t, "POST", a.testURL("/v1/check"), `{"labels":{}}`, nil); r.code != 400 || !strings.Contains(r.body, "control_point is required") {
		t.Fatalf("malformed JSON check = %d %s", r.code, r.body)
	}

	// bob over nginx auth_request: the tier label comes from baggage.
	r := doRequest(t, "GET", a.testURL("/v1/check/http"), "", map[string]string{
		"X-Original-URI": "/orders", "X-Original-Method": "GET", "Baggage": "user=bob,tier=free",
	})
	if r.code != 200 || r.header.Get("X-FluxGate-Decision") != "accepted" || r.header.Get("RateLimit-Remaining") != "4" {
		t.Fatalf("auth_request bob = %d %v", r.code, r.header)
	}
	r = doRequest(t, "POST", a.testURL("/v1/check/http"), "", map[string]string{"X-Original-URI": "/", "Baggage": "user=alice,tier=free"})
	if r.code != 429 || r.header.Get("X-FluxGate-Reason") != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("auth_request alice = %d %v", r.code, r.header)
	}

	// Envoy ext_authz on the same gRPC port.
	ar, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/", Host: "shop", Headers: map[string]string{"baggage": "user=alice,tier=free"},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d := ar.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 429 || ar.GetStatus().GetCode() != int32(codes.ResourceExhausted) {
		t.Fatalf("ext_authz alice = %v", ar)
	}

	// Explain and control points.
	r = adminRequest(t, "POST", a.testURL("/v1/explain"), `{"control_point":"ingress","labels":{"user":"alice","tier":"free"}}`, nil)
	var x struct {
		Accepted bool   `json:"accepted"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(r.body), &x); err != nil || r.code != 200 || x.Accepted || x.Reason != "rate_limited" {
		t.Fatalf("explain = %d %s", r.code, r.body)
	}
	r = adminRequest(t, "GET", a.testURL("/v1/controlpoints"), "", nil)
	if r.code != 200 || !strings.Contains(r.body, `"name":"ingress"`) {
		t.Fatalf("controlpoints = %d %s", r.code, r.body)
	}
}

// limits.aperture_cache_mib bounds Aperture's caches on the check port:
// with 1 MiB, a second 600 KiB entry evicts the first.
func TestApertureCacheBound(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Limits.ApertureCacheMiB = 1
	a := startAgent(t, cfg)
	conn, err := grpc.NewClient(a.Addr(ListenerGRPC).String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := ap.NewFlowControlServiceClient(conn)
	ctx := context.Background()
	value := make([]byte, 600<<10)
	for _, key := range []string{"first", "second"} {
		up, err := c.CacheUpsert(ctx, &ap.CacheUpsertRequest{GlobalCacheEntries: map[string]*ap.CacheEntry{key: {Value: value, Ttl: durationpb.New(time.Minute)}}})
		if err != nil || up.GetGlobalCacheResponses()[key].GetOperationStatus() != ap.CacheOperationStatus_SUCCESS {
			t.Fatalf("upsert %s: %v %v", key, up, err)
		}
	}
	got, err := c.CacheLookup(ctx, &ap.CacheLookupRequest{GlobalCacheKeys: []string{"first", "second"}})
	if err != nil {
		t.Fatal(err)
	}
	first, second := got.GetGlobalCacheResponses()["first"], got.GetGlobalCacheResponses()["second"]
	if first.GetLookupStatus() != ap.CacheLookupStatus_MISS || second.GetLookupStatus() != ap.CacheLookupStatus_HIT {
		t.Errorf("lookups: first %v, second %v; want a miss (evicted) and a hit", first.GetLookupStatus(), second.GetLookupStatus())
	}
}
