package agent

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Every refused call counts in fluxgate_api_refused_total by surface and
// reason; calls let in count nowhere.
func TestRefusedCallsAreCounted(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Check.Token, cfg.OTLP.Token = testCheckToken, testOTLPToken
	a := startAgent(t, cfg)
	otlpURL := "http://" + a.Addr(ListenerOTLPHTTP).String() + "/v1/traces"
	h := func(auth string) map[string]string {
		m := map[string]string{"Content-Type": "application/json"}
		if auth != "" {
			m["Authorization"] = auth
		}
		return m
	}
	doRequest(t, "GET", a.testURL("/v1/policies"), "", h(""))
	doRequest(t, "GET", a.testURL("/v1/policies"), "", h("Basic x"))
	doRequest(t, "PUT", a.testURL("/v1/policies/ns/p"), "x", h("Bearer wrong"))
	doRequest(t, "GET", a.testURL("/v1/policies"), "", h("Bearer "+testAdminToken))
	doRequest(t, "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, h(""))
	doRequest(t, "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, h("Bearer "+testAdminToken))
	doRequest(t, "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, h("Bearer "+testCheckToken))
	doRequest(t, "POST", otlpURL, `{"resourceSpans":[]}`, h("Bearer "+testCheckToken))
	conn, err := grpc.NewClient(a.Addr(ListenerGRPC).String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pb.NewFlowControlServiceClient(conn).Check(ctx, &pb.CheckRequest{ControlPoint: "api"}); err == nil {
		t.Fatal("a gRPC check without check.token was let in")
	}

	for _, tc := range []struct {
		surface, reason string
		want            float64
	}{
		{surfaceAdmin, reasonDisabled, 0},
		{surfaceAdmin, reasonMissingToken, 2},
		{surfaceAdmin, reasonWrongToken, 1},
		{surfaceCheck, reasonMissingToken, 2}, // HTTP and gRPC
		{surfaceCheck, reasonWrongToken, 1},
		{surfaceOTLP, reasonMissingToken, 0},
		{surfaceOTLP, reasonWrongToken, 1},
	} {
		if got := testutil.ToFloat64(a.refused.WithLabelValues(tc.surface, tc.reason)); got != tc.want {
			t.Errorf("fluxgate_api_refused_total{surface=%q,reason=%q} = %v, want %v", tc.surface, tc.reason, got, tc.want)
		}
	}

	// With admin.token empty, the admin endpoints are off: disabled.
	cfg = testConfig(t.TempDir())
	cfg.Admin.Token = ""
	off := startAgent(t, cfg)
	doRequest(t, "PUT", off.testURL("/v1/policies/ns/p"), "x", h("Bearer anything"))
	if got := testutil.ToFloat64(off.refused.WithLabelValues(surfaceAdmin, reasonDisabled)); got != 1 {
		t.Errorf("fluxgate_api_refused_total{surface=\"admin\",reason=\"disabled\"} = %v with admin off, want 1", got)
	}
}
