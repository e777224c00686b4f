package server

import (
	"context"
	"encoding/json"
	"maps"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func envoyRequest(cp string, headers map[string]string) *authv3.CheckRequest {
	ext := map[string]string{}
	if cp != "" {
		ext[ContextExtensionControlPoint] = cp
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 4711}},
		}}},
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders?page=2", Host: "shop.example", Scheme: "https", Headers: headers,
		}},
	}}
}

func TestExtAuthzFlow(t *testing.T) {
	want := map[string]string{
		"http.method": "GET", "http.target": "/orders?page=2", "http.host": "shop.example", "http.scheme": "https",
		"source.address":             "203.0.113.7",
		"client.address":             "203.0.113.7",
		"http.request.method":        "GET",
		"url.path":                   "/orders",
		"url.query":                  "page=2",
		"url.scheme":                 "https",
		"server.address":             "shop.example",
		"http.request.header.x_user": "alice", "http.request.header.baggage": "tenant=acme", "tenant": "acme",
	}
	headers := map[string]string{":authority": "shop.example", ":path": "/orders?page=2", ":method": "GET", "x-user": "alice", "baggage": "tenant=acme"}
	req, baggage, _ := extAuthzFlow(envoyRequest("", headers))
	if req.ControlPoint != "ingress" || baggage != "tenant=acme" || !maps.Equal(req.Labels, want) {
		t.Fatalf("flow = %q %q %v", req.ControlPoint, baggage, req.Labels)
	}

	// encode_raw_headers: header_map with raw values instead of headers.
	raw := envoyRequest("checkout", nil)
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/orders?page=2")}, {Key: "x-user", RawValue: []byte("alice")}, {Key: "baggage", Value: "tenant=acme"},
	}}
	req, _, _ = extAuthzFlow(raw)
	if req.ControlPoint != "checkout" || !maps.Equal(req.Labels, want) {
		t.Fatalf("raw flow = %q %v", req.ControlPoint, req.Labels)
	}

	// A request without HTTP attributes (the network filter) still decides.
	req, _, _ = extAuthzFlow(&authv3.CheckRequest{})
	if req.ControlPoint != "ingress" || req.Labels["http.method"] != "" {
		t.Fatalf("empty flow = %q %v", req.ControlPoint, req.Labels)
	}
}

func TestExtAuthz(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit, sampleNone)
	client := authv3.NewAuthorizationClient(dialGRPC(t, s))
	alice := map[string]string{"x-user": "alice", "x-tier": "free", "baggage": "tenant=acme,user=mallory"}
	for i := range 5 {
		resp, err := client.Check(context.Background(), envoyRequest("", alice))
		if err != nil {
			t.Fatal(err)
		}
		ok := resp.GetOkResponse()
		if ok == nil || resp.GetStatus().GetCode() != int32(codes.OK) {
			t.Fatalf("check %d = %v", i, resp)
		}
		up := envoyHeaders(ok.GetHeaders())
		if up.Get("X-FluxGate-Decision") != "accepted" || up.Get("Baggage") != "tier=free,user=alice,tenant=acme" {
			t.Fatalf("upstream headers = %v", up)
		}
		for _, h := range ok.GetHeaders() {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Fatalf("header %v appends", h)
			}
		}
		if down := envoyHeaders(ok.GetResponseHeadersToAdd()); down.Get("RateLimit-Limit") != "5" {
			t.Fatalf("response headers = %v", down)
		}
	}

	resp, err := client.Check(context.Background(), envoyRequest("", alice))
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetStatus().GetCode() != int32(codes.ResourceExhausted) || d.GetStatus().GetCode() != 429 {
		t.Fatalf("6th check = %v", resp)
	}
	h := envoyHeaders(d.GetHeaders())
	for k, v := range map[string]string{
		"X-FluxGate-Decision": "rejected", "X-FluxGate-Reason": "rate_limited", "X-FluxGate-Policy": "default/per-user-limit",
		"X-FluxGate-Component": "0", "Retry-After": "12", "RateLimit-Remaining": "0", "Content-Type": "application/json",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	var body deniedBody
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body.Reason != "rate_limited" || body.Policy != "default/per-user-limit" || body.RetryAfterSeconds != "12" {
		t.Fatalf("body = %q (%v)", d.GetBody(), err)
	}

	resp, err = client.Check(context.Background(), envoyRequest("sampled", nil))
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDeniedResponse(); d == nil || resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || d.GetStatus().GetCode() != 403 {
		t.Fatalf("sampled out = %v", resp)
	}

	// Without classifier labels no baggage header is set.
	resp, err = client.Check(context.Background(), envoyRequest("elsewhere", map[string]string{"baggage": "a=b"}))
	if err != nil {
		t.Fatal(err)
	}
	if up := envoyHeaders(resp.GetOkResponse().GetHeaders()); up.Get("Baggage") != "" || up.Get("X-FluxGate-Decision") != "accepted" {
		t.Fatalf("unmatched = %v", resp)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (authorization{s: s}).Check(ctx, envoyRequest("", alice)); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled: %v", err)
	}
}
