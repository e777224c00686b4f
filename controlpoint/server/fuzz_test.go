package server

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzCheckJSON feeds arbitrary bodies to POST /v1/check: the adapter
// never panics and answers 200 or a 4xx.
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{
		`{"control_point":"ingress","labels":{"http.request.header.x_user":"alice","http.request.header.x_tier":"free"}}`,
		`{"control_point":"ingress","tokens":3.5}`,
		`{"controlPoint":"ingress","tokens":"NaN"}`,
		`{"control_point":"ingress","tokens":-1}`,
		`{"control_point":"","labels":null}`,
		`{"control_point":"x","labels":{"a":1}}`,
		`{"control_point":"x","unknown":true}`,
		`[]`, `null`, ``, `{`, "\x00", `{"control_point":"\ud800"}`,
	} {
		f.Add(seed)
	}
	s, _ := newTestServer(f, perUserLimit)
	f.Fuzz(func(t *testing.T, body string) {
		w := serve(s, "POST", "/v1/check", body, http.Header{"Content-Type": {"application/json"}})
		if w.Code != 200 && (w.Code < 400 || w.Code > 499) {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		if w.Code == 200 && !strings.Contains(w.Body.String(), `"decision_type":"DECISION_TYPE_`) {
			t.Fatalf("200 without a decision for %q: %s", body, w.Body)
		}
	})
}

// FuzzAuthRequestHeaders feeds arbitrary header values to
// /v1/check/http: the adapter never panics and answers 200, 429, 403 or
// another 4xx.
func FuzzAuthRequestHeaders(f *testing.F) {
	f.Add("/orders?page=2", "GET", "shop.example", "https", "203.0.113.7", "1.2.3.4, 5.6.7.8", "alice", "free", "tenant=acme;p=1", "close, X-User", "ingress")
	f.Add("", "", "", "", "", "", "", "", "", "", "")
	f.Add("/%zz", "get", "[::1]:80", "HTTP", "[::1]:4711", ",", "\xff", "free", ",,=;=%", "X-Original-URI", "sampled")
	s, _ := newTestServer(f, perUserLimit, sampleNone)
	f.Fuzz(func(t *testing.T, uri, method, host, proto, realIP, xff, user, tier, baggage, connection, cp string) {
		h := http.Header{}
		for k, v := range map[string]string{
			"X-Original-Uri": uri, "X-Original-Method": method, "X-Original-Host": host, "X-Forwarded-Proto": proto,
			"X-Real-Ip": realIP, "X-Forwarded-For": xff, "X-User": user, "X-Tier": tier, "Baggage": baggage,
			"Connection": connection, "X-Fluxgate-Control-Point": cp,
		} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		w := serve(s, "GET", "/v1/check/http", "", h)
		switch {
		case w.Code == 200:
		case w.Code >= 400 && w.Code <= 499:
		default:
			t.Fatalf("status %d for %v", w.Code, h)
		}
		if w.Code != 400 && w.Header().Get("X-FluxGate-Decision") == "" {
			t.Fatalf("status %d without a decision header for %v", w.Code, h)
		}
	})
}
