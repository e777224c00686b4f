package server

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

func TestAuthRequestFlow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		host   string
		header http.Header
		cp     string
		want   map[string]string
	}{{
		name:   "nginx",
		method: "GET",
		host:   "127.0.0.1:8080",
		header: http.Header{
			"X-Original-Uri":    {"/orders?page=2"},
			"X-Original-Method": {"POST"},
			"X-Original-Host":   {"shop.example"},
			"X-Forwarded-Proto": {"https"},
			"X-Real-Ip":         {"203.0.113.7"},
			"X-Forwarded-For":   {"198.51.100.1, 10.0.0.1"},
			"X-User":            {"alice"},
			"Connection":        {"close, X-Secret"},
			"X-Secret":          {"hop"},
			"Keep-Alive":        {"timeout=5"},
			"Upgrade":           {"websocket"},
			"Baggage":           {"tenant=acme%20corp;p=1,bad"},
		},
		cp: "ingress",
		want: map[string]string{
			"http.method": "POST", "http.target": "/orders?page=2", "http.host": "shop.example", "http.scheme": "https",
			"source.address":                "203.0.113.7",
			"client.address":                "203.0.113.7",
			"http.request.method":           "POST",
			"url.path":                      "/orders",
			"url.query":                     "page=2",
			"url.scheme":                    "https",
			"server.address":                "shop.example",
			"http.request.header.x_user":    "alice",
			"http.request.header.x_real_ip": "203.0.113.7", "http.request.header.x_forwarded_for": "198.51.100.1, 10.0.0.1",
			"http.request.header.x_forwarded_proto": "https",
			"http.request.header.baggage":           "tenant=acme%20corp;p=1,bad",
			"tenant":                                "acme corp",
		},
	}, {
		name:   "defaults and forward-auth headers",
		method: "POST",
		host:   "agent:8080",
		header: http.Header{
			"X-Forwarded-Uri":          {"/a"},
			"X-Forwarded-Method":       {"PUT"},
			"X-Forwarded-For":          {"198.51.100.1:4711, 10.0.0.1"},
			"X-Fluxgate-Control-Point": {"checkout"},
		},
		cp: "checkout",
		want: map[string]string{
			"http.method": "PUT", "http.target": "/a", "http.host": "agent:8080", "http.scheme": "http",
			"source.address":                      "198.51.100.1",
			"client.address":                      "198.51.100.1",
			"http.request.method":                 "PUT",
			"url.path":                            "/a",
			"url.scheme":                          "http",
			"server.address":                      "agent",
			"server.port":                         "8080",
			"http.request.header.x_forwarded_for": "198.51.100.1:4711, 10.0.0.1",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/v1/check/http", nil)
			r.Host = tc.host
			r.Header = tc.header
			req, err := authRequestFlow(r)
			if err != nil {
				t.Fatal(err)
			}
			if req.ControlPoint != tc.cp || !maps.Equal(req.Labels, tc.want) {
				t.Fatalf("flow = %q %v\nwant %q %v", req.ControlPoint, req.Labels, tc.cp, tc.want)
			}
		})
	}
}

func TestAuthRequest(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit, sampleNone)
	hdr := func(kv ...string) http.Header {
		h := http.Header{"X-Original-Uri": {"/orders"}, "X-Original-Method": {"GET"}}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for i := range 5 {
		w := serve(s, "GET", "/v1/check/http", "", hdr("X-User", "alice", "X-Tier", "free", "Baggage", "tenant=acme"))
		if w.Code != 200 || w.Header().Get("X-FluxGate-Decision") != "accepted" {
			t.Fatalf("check %d = %d %v", i, w.Code, w.Header())
		}
		// The upstream gets the client's baggage plus the classifier's labels.
		if got := w.Header().Get("Baggage"); got != "tier=free,user=alice,tenant=acme" {
			t.Fatalf("Baggage = %q", got)
		}
		if got := w.Header().Get("RateLimit-Remaining"); got != string(rune('4'-i)) {
			t.Fatalf("check %d: RateLimit-Remaining = %q", i, got)
		}
	}
	w := serve(s, "POST", "/v1/check/http", "", hdr("X-User", "alice", "X-Tier", "free"))
	want := map[string]string{
		"X-FluxGate-Decision": "rejected", "X-FluxGate-Reason": "rate_limited", "X-FluxGate-Policy": "default/per-user-limit",
		"X-FluxGate-Component": "0", "Retry-After": "12", "RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "60",
	}
	if w.Code != 429 {
		t.Fatalf("6th check = %d", w.Code)
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}

	w = serve(s, "GET", "/v1/check/http", "", hdr("X-FluxGate-Control-Point", "sampled"))
	if w.Code != 403 || w.Header().Get("X-FluxGate-Reason") != "not_sampled" || w.Header().Get("X-FluxGate-Policy") != "default/sample-none" {
		t.Fatalf("sampled out = %d %v", w.Code, w.Header())
	}

	// No policy at the control point: admitted, no baggage to add.
	w = serve(s, "GET", "/v1/check/http", "", hdr("X-FluxGate-Control-Point", "elsewhere"))
	if w.Code != 200 || w.Header().Get("Baggage") != "" {
		t.Fatalf("unmatched = %d %v", w.Code, w.Header())
	}

	w = serve(s, "GET", "/v1/check/http", "", http.Header{"X-User": {"alice"}})
	if w.Code != 400 || !strings.Contains(w.Body.String(), "X-Original-URI") {
		t.Fatalf("no X-Original-URI = %d %s", w.Code, w.Body)
	}
}

// The canonical spellings the adapter reads and writes are net/http's.
func TestCanonicalSpellings(t *testing.T) {
	for name, ck := range map[string]string{
		HeaderControlPoint: ckControlPoint, HeaderOriginalURI: ckOriginalURI, HeaderOriginalMethod: ckOriginalMethod,
		HeaderOriginalHost: ckOriginalHost, HeaderFlowEnd: ckFlowEnd, HeaderFlowID: ckFlowID, "X-Real-IP": ckRealIP,
	} {
		if want := textproto.CanonicalMIMEHeaderKey(name); ck != want {
			t.Errorf("%s: spelled %q, canonical %q", name, ck, want)
		}
	}
	for _, name := range []string{flow.HeaderDecision, flow.HeaderReason, flow.HeaderPolicy, flow.HeaderComponent,
		"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After", "X-Other"} {
		if got, want := canonicalDecisionName(name), textproto.CanonicalMIMEHeaderKey(name); got != want {
			t.Errorf("canonicalDecisionName(%q) = %q, want %q", name, got, want)
		}
	}
}

// The calls an event-loop server answers, and which may wait: the JSON
// check only while no control point may wait (its own is known only
// after decoding), an auth_request check by its control point.
func TestLoopRoutes(t *testing.T) {
	plain, _ := newTestServer(t)
	waiting, _ := newTestServer(t, wideSlots) // adaptive_concurrency at api may wait
	for _, tc := range []struct {
		method, path string
		plain, wait  bool
	}{
		{"GET", "/v1/check/http", true, true},
		{"POST", "/v1/check/http", true, true},
		{"HEAD", "/v1/check/http", false, false},
		{"POST", "/v1/flow/end", true, true},
		{"GET", "/v1/flow/end", false, false},
		{"POST", "/v1/check", true, false},
		{"GET", "/v1/policies", false, false},
	} {
		if got := plain.LoopRoute(tc.method, tc.path); got != tc.plain {
			t.Errorf("%s %s, no control point that waits: %v", tc.method, tc.path, got)
		}
		if got := waiting.LoopRoute(tc.method, tc.path); got != tc.wait {
			t.Errorf("%s %s, a control point that may wait: %v", tc.method, tc.path, got)
		}
	}
	req := func(path, cp string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if cp != "" {
			r.Header.Set(HeaderControlPoint, cp)
		}
		return r
	}
	for _, tc := range []struct {
		r    *http.Request
		want bool
	}{
		{req("/v1/check/http", "api"), true},
		{req("/v1/check/http", "other"), false},
		{req("/v1/check/http", ""), false}, // ingress
		{req("/v1/flow/end", "api"), false},
	} {
		if got := waiting.LoopMayWait(tc.r); got != tc.want {
			t.Errorf("LoopMayWait(%s, control point %q) = %v", tc.r.URL.Path, tc.r.Header.Get(HeaderControlPoint), got)
		}
	}
}
