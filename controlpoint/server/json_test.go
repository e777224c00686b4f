package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestCheckJSON(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit)
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	body := `{"control_point":"ingress","labels":{"http.request.header.x_user":"alice","http.request.header.x_tier":"free"}}`
	for i := range 5 {
		w := serve(s, "POST", "/v1/check", body, jsonCT)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"decision_type":"DECISION_TYPE_ACCEPTED"`) {
			t.Fatalf("check %d = %d %s", i, w.Code, w.Body)
		}
	}
	w := serve(s, "POST", "/v1/check", body, nil) // no Content-Type is taken as JSON
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("6th check = %d %v", w.Code, w.Header())
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["decision_type"] != "DECISION_TYPE_REJECTED" || got["reject_reason"] != "REJECT_REASON_RATE_LIMITED" ||
		got["denied_response_status_code"] != 429.0 || got["control_point"] != "ingress" {
		t.Fatalf("6th check = %s", w.Body)
	}
	lds := got["limiter_decisions"].([]any)
	if ld := lds[0].(map[string]any); ld["policy_name"] != "per-user-limit" || ld["component_id"] != "0" || ld["limit_key"] != "alice" {
		t.Fatalf("limiter decision = %v", ld)
	}
}

func TestCheckJSONMalformed(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit)
	for _, tc := range []struct {
		name, method, ctype, body string
		code                      int
		want                      string
	}{
		{"bad JSON", "POST", "application/json", `{"control_point":`, 400, "invalid check request"},
		{"not an object", "POST", "application/json", `[1,2]`, 400, "invalid check request"},
		{"empty body", "POST", "application/json", ``, 400, "body is empty"},
		{"missing control_point", "POST", "application/json", `{"labels":{"a":"b"}}`, 400, "control_point is required"},
		{"negative tokens", "POST", "application/json", `{"control_point":"ingress","tokens":-2}`, 400, "tokens must be"},
		{"unknown field", "POST", "application/json", `{"control_point":"ingress","user":"alice"}`, 400, "unknown field"},
		{"label not a string", "POST", "application/json", `{"control_point":"ingress","labels":{"a":1}}`, 400, "invalid check request"},
		{"wrong content type", "POST", "text/plain", `{"control_point":"ingress"}`, 400, "Content-Type must be application/json"},
		{"form content type", "POST", "application/x-www-form-urlencoded", `control_point=ingress`, 400, "Content-Type"},
		{"too large", "POST", "application/json", `{"control_point":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 413, "exceeds 1 MiB"},
		{"GET", "GET", "", ``, 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.ctype != "" {
				h.Set("Content-Type", tc.ctype)
			}
			w := serve(s, tc.method, "/v1/check", tc.body, h)
			if w.Code != tc.code {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tc.code, w.Body)
			}
			if tc.want == "" {
				return
			}
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tc.want) {
				t.Fatalf("body = %s, want error containing %q", w.Body, tc.want)
			}
		})
	}
}

func TestExplainAndControlPoints(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit)
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	labels := `{"http.request.header.x_user":"alice","http.request.header.x_tier":"free"}`
	for range 5 {
		serve(s, "POST", "/v1/check", `{"control_point":"ingress","labels":`+labels+`}`, jsonCT)
	}
	w := serve(s, "POST", "/v1/explain", `{"control_point":"ingress","labels":`+labels+`,"tokens":1}`, jsonCT)
	if w.Code != 200 {
		t.Fatalf("explain = %d %s", w.Code, w.Body)
	}
	var x struct {
		Accepted   bool              `json:"accepted"`
		Reason     string            `json:"reason"`
		Labels     map[string]string `json:"labels"`
		Components []struct {
			ComponentID string `json:"component_id"`
			WouldReject bool   `json:"would_reject"`
			LimitKey    string `json:"limit_key"`
		} `json:"components"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &x); err != nil {
		t.Fatal(err)
	}
	if x.Accepted || x.Reason != "rate_limited" || x.Labels["user"] != "alice" || len(x.Components) != 1 ||
		!x.Components[0].WouldReject || x.Components[0].LimitKey != "alice" {
		t.Fatalf("explain = %s", w.Body)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"labels":{}}`, "control_point is required"},
		{`{"control_point":"ingress","tokens":-1}`, "tokens must be"},
		{`{"control_point":"ingress","bogus":1}`, "unknown field"},
		{`{"control_point":"ingress"} {}`, "data after"},
	} {
		w := serve(s, "POST", "/v1/explain", tc.body, jsonCT)
		if w.Code != 400 || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("explain %s = %d %s, want 400 %q", tc.body, w.Code, w.Body, tc.want)
		}
	}

	w = serve(s, "GET", "/v1/controlpoints", "", nil)
	var cps struct {
		ControlPoints []struct {
			Name      string   `json:"name"`
			Checks    uint64   `json:"checks"`
			LabelKeys []string `json:"label_keys"`
		} `json:"control_points"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &cps); err != nil || w.Code != 200 {
		t.Fatalf("controlpoints = %d %s", w.Code, w.Body)
	}
	if len(cps.ControlPoints) != 1 || cps.ControlPoints[0].Name != "ingress" || cps.ControlPoints[0].Checks != 5 {
		t.Fatalf("controlpoints = %s", w.Body)
	}

	empty, _ := newTestServer(t)
	if w := serve(empty, "GET", "/v1/controlpoints", "", nil); strings.TrimSpace(w.Body.String()) != `{"control_points":[]}` {
		t.Fatalf("no control points = %s", w.Body)
	}
}
