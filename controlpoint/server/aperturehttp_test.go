package server

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// TestApertureCheckHTTP drives Aperture's CheckHTTP with a client built
// from the generated code: the HTTP attributes become the flow's labels
// (the classifier reads the x-user header, selectors see the path in both
// naming conventions), an admitted request gets status OK and a baggage
// header carrying the classifier's labels beside the caller's, a rejected
// one status UNAVAILABLE with the limiter's 429 and retry-after, and the
// check response rides in the dynamic metadata.
func TestApertureCheckHTTP(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit, sampleNone)
	c := ap.NewFlowControlServiceHTTPClient(dialGRPC(t, s))
	ctx := context.Background()
	req := func(cp string) *ap.CheckHTTPRequest {
		return &ap.CheckHTTPRequest{
			ControlPoint: cp,
			Source:       &ap.SocketAddress{Address: "10.0.0.7", Port: 51234},
			Destination:  &ap.SocketAddress{Address: "10.0.0.1", Port: 8080},
			Request: &ap.CheckHTTPRequest_HttpRequest{
				Method: "GET", Path: "/api/items?page=2", Host: "shop.example:8080", Scheme: "https",
				Protocol: "HTTP/1.1", Size: -1,
				Headers: map[string]string{":authority": "shop.example", "x-user": "alice", "X-Tier": "free", "baggage": "session=s1",
					"Authorization": "Bearer s3cret", "cookie": "sid=s3cret"},
			},
		}
	}
	for i := 0; i < 5; i++ {
		r, err := c.CheckHTTP(ctx, req("ingress"))
		if err != nil {
			t.Fatal(err)
		}
		ok := r.GetOkResponse()
		if r.GetStatus().GetCode() != int32(codes.OK) || ok == nil || r.GetCheckResponse().GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED {
			t.Fatalf("request %d: status %v, response %v", i, r.GetStatus(), r.GetHttpResponse())
		}
		if b := ok.GetHeaders()["baggage"]; !strings.Contains(b, "user=alice") || !strings.Contains(b, "tier=free") || !strings.Contains(b, "session=s1") {
			t.Fatalf("request %d: baggage to send upstream %q, want the classifier's user and tier beside session", i, b)
		}
	}
	labels := func(r *ap.CheckHTTPResponse) map[string]string { return r.GetCheckResponse().GetTelemetryFlowLabels() }
	r, err := c.CheckHTTP(ctx, req("ingress"))
	if err != nil {
		t.Fatal(err)
	}
	// Credentials reach the check but not the telemetry labels, which
	// SDKs copy into their flow spans.
	for k, v := range labels(r) {
		if strings.Contains(v, "s3cret") {
			t.Errorf("telemetry label %s = %q carries the request's credentials", k, v)
		}
	}
	if !slices.Contains(r.GetCheckResponse().GetFlowLabelKeys(), flow.HeaderLabel("Authorization")) {
		t.Errorf("flow label keys %v lack the Authorization header the check saw", r.GetCheckResponse().GetFlowLabelKeys())
	}
	denied := r.GetDeniedResponse()
	if r.GetStatus().GetCode() != int32(codes.Unavailable) || denied == nil || denied.GetStatus() != 429 ||
		denied.GetHeaders()["retry-after"] == "" || denied.GetHeaders()["x-fluxgate-reason"] != "rate_limited" {
		t.Fatalf("sixth request: status %v, response %v; want UNAVAILABLE, 429 with retry-after", r.GetStatus(), r.GetHttpResponse())
	}
	cr := r.GetCheckResponse()
	if cr.GetRejectReason() != ap.CheckResponse_REJECT_REASON_RATE_LIMITED || cr.GetWaitTime() != nil {
		t.Fatalf("sixth request's check response: %v, wait %v", cr.GetRejectReason(), cr.GetWaitTime())
	}
	for k, want := range map[string]string{
		"url.path": "/api/items", "http.target": "/api/items?page=2", "http.request.method": "GET", "server.address": "shop.example",
		"http.flavor": "1.1", "http.request_content_length": "-1", "client.address": "10.0.0.7", "user": "alice",
		"aperture.control_point_type": "http",
	} {
		if got := labels(r)[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if _, ok := labels(r)["http.request.header.:authority"]; ok {
		t.Error("a pseudo-header became a label")
	}
	raw, err := base64.StdEncoding.DecodeString(r.GetDynamicMetadata().GetFields()["aperture.check_response"].GetStringValue())
	var meta ap.CheckResponse
	if err != nil || proto.Unmarshal(raw, &meta) != nil || !proto.Equal(&meta, cr) {
		t.Fatalf("dynamic metadata holds %v (%v), want the check response", &meta, err)
	}

	r, err = c.CheckHTTP(ctx, req("sampled"))
	if err != nil || r.GetDeniedResponse().GetStatus() != 403 || r.GetCheckResponse().GetRejectReason() != ap.CheckResponse_REJECT_REASON_NOT_SAMPLED {
		t.Fatalf("sampled: %v (%v), want 403 not sampled", r, err)
	}
	if r, err := c.CheckHTTP(ctx, &ap.CheckHTTPRequest{ControlPoint: "ramped", RampMode: true}); err != nil ||
		r.GetDeniedResponse().GetStatus() != 403 || r.GetCheckResponse().GetRejectReason() != ap.CheckResponse_REJECT_REASON_NO_MATCHING_RAMP {
		t.Fatalf("ramp mode without a ramp: %v (%v), want 403 no matching ramp", r, err)
	}
	if _, err := c.CheckHTTP(ctx, &ap.CheckHTTPRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no control point: %v, want InvalidArgument", err)
	}
}
