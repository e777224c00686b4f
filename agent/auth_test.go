package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// zeroCapacity is the policy of the attack in issue 14: a limiter of
// capacity 0 at the control point api, which rejects every flow.
const zeroCapacity = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: zero, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 0}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
`

// operatorCalls are the operator endpoints of the HTTP API: the ones
// that change state and the ones that reveal configuration.
var operatorCalls = []struct{ method, path, body string }{
	{"PUT", "/v1/policies/default/zero", zeroCapacity},
	{"DELETE", "/v1/policies/default/zero", ""},
	{"GET", "/v1/policies", ""},
	{"GET", "/v1/policies/default/zero", ""},
	{"PUT", "/v1/dynamic-config/default/zero", `{"capacity": 0}`},
	{"GET", "/v1/dynamic-config/default/zero", ""},
	{"GET", "/v1/signals/default/zero", ""},
	{"POST", "/v1/explain", `{"control_point":"api"}`},
	{"GET", "/v1/controlpoints", ""},
}

// openCalls stay open with or without a token: the check API and
// monitoring.
var openCalls = []struct{ method, path, body string }{
	{"POST", "/v1/check", `{"control_point":"api"}`},
	{"GET", "/v1/check/http", ""},
	{"GET", "/v1/monitoring/health", ""},
	{"GET", "/v1/monitoring/metrics", ""},
	{"GET", "/readyz", ""},
	{"GET", "/livez", ""},
}

func decisionAt(t *testing.T, a *Agent, cp string) string {
	t.Helper()
	r := doRequest(t, "POST", a.testURL("/v1/check"), `{"control_point":"`+cp+`"}`, nil)
	var resp struct {
		DecisionType string `json:"decision_type"`
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil || r.code != 200 {
		t.Fatalf("check = %d %s", r.code, r.body)
	}
	return resp.DecisionType
}

// Without admin.token the operator endpoints are off: the unauthenticated
// PUT of issue 14 answers 403 with how to turn them on, and loads nothing.
func TestAdminOffWithoutToken(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.Admin.Token = ""
	a := startAgent(t, cfg)

	r := doRequest(t, "PUT", a.testURL("/v1/policies/default/zero"), zeroCapacity, map[string]string{"Content-Type": "application/yaml"})
	if r.code != 403 {
		t.Fatalf("unauthenticated PUT without admin.token = %d %s, want 403", r.code, r.body)
	}
	var body errorBody
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("403 body is not JSON: %v\n%s", err, r.body)
	}
	if body.Error != "admin_disabled" || !strings.Contains(body.Message, "admin.token") || !strings.Contains(body.Message, "FLUXGATE_ADMIN_TOKEN") || !strings.Contains(body.Message, "Bearer") {
		t.Errorf("403 body = %+v, want admin_disabled saying how to enable admin", body)
	}
	if n := len(a.Store().Snapshot().Entries); n != 0 {
		t.Fatalf("refused PUT loaded %d policies", n)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("refused PUT wrote files: %v", ents)
	}
	if got := decisionAt(t, a, "api"); got != "DECISION_TYPE_ACCEPTED" {
		t.Fatalf("check after the refused PUT = %s, want accepted", got)
	}

	for _, c := range operatorCalls {
		for _, auth := range []string{"", "Bearer anything"} {
			r := doRequest(t, c.method, a.testURL(c.path), c.body, map[string]string{"Authorization": auth})
			if r.code != 403 || !strings.Contains(r.body, "admin_disabled") {
				t.Errorf("%s %s (Authorization %q) without admin.token = %d %s, want 403 admin_disabled", c.method, c.path, auth, r.code, r.body)
			}
		}
	}
	for _, c := range openCalls {
		if r := doRequest(t, c.method, a.testURL(c.path), c.body, nil); r.code == 401 || r.code == 403 {
			t.Errorf("%s %s = %d %s, want it open", c.method, c.path, r.code, r.body)
		}
	}
	if n := len(a.Store().Snapshot().Entries); n != 0 {
		t.Fatalf("policies after refused calls: %d", n)
	}
}

func TestAdminToken(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Admin.Token = "s3cret"
	a := startAgent(t, cfg)
	url := a.testURL("/v1/policies/default/demo")
	for _, tc := range []struct {
		method, auth string
		code         int
	}{
		{"PUT", "", 401},
		{"PUT", "Bearer wrong", 401},
		{"PUT", "Bearer s3cre", 401},
		{"PUT", "Bearer s3cret2", 401},
		{"PUT", "s3cret", 401},
		{"PUT", "Basic s3cret", 401},
		{"PUT", "Bearer", 401},
		{"PUT", "Bearer ", 401},
		{"PUT", "Bearer s3cret", 201},
		{"PUT", "bearer s3cret", 200}, // the scheme is case-insensitive (RFC 7235)
		{"PUT", "BEARER  s3cret", 200},
		{"GET", "", 401},
		{"GET", "Bearer S3CRET", 401}, // the token is not
		{"GET", "Bearer s3cret", 200},
		{"DELETE", "Bearer s3cre", 401},
		{"DELETE", "Bearer s3cret", 204},
	} {
		body := ""
		if tc.method == "PUT" {
			body = policyYAML("default", "demo", "1s")
		}
		r := doRequest(t, tc.method, url, body, map[string]string{"Authorization": tc.auth})
		if r.code != tc.code {
			t.Errorf("%s with %q = %d %s, want %d", tc.method, tc.auth, r.code, r.body, tc.code)
		}
		if r.code == 401 {
			if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
				t.Errorf("401 WWW-Authenticate = %q, want Bearer", h)
			}
			if !strings.Contains(r.body, `"unauthorized"`) {
				t.Errorf("401 body = %s", r.body)
			}
		}
	}

	// Every operator endpoint wants the token; none answers 401 or 403
	// with it. Check and monitoring stay open without it.
	for _, c := range operatorCalls {
		if r := doRequest(t, c.method, a.testURL(c.path), c.body, nil); r.code != 401 {
			t.Errorf("%s %s without the token = %d %s, want 401", c.method, c.path, r.code, r.body)
		}
		if r := doRequest(t, c.method, a.testURL(c.path), c.body, map[string]string{"Authorization": "Bearer s3cret"}); r.code == 401 || r.code == 403 {
			t.Errorf("%s %s with the token = %d %s", c.method, c.path, r.code, r.body)
		}
	}
	for _, c := range openCalls {
		if r := doRequest(t, c.method, a.testURL(c.path), c.body, nil); r.code == 401 || r.code == 403 {
			t.Errorf("%s %s = %d %s, want it open", c.method, c.path, r.code, r.body)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the agent's goroutines to log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// The agent says at start which surface is open to whom.
func TestStartupLogsSurfaces(t *testing.T) {
	for _, tc := range []struct {
		name, host, token string
		want              map[string]string // msg → level
		wantNot           []string
	}{
		{"no token, loopback", "127.0.0.1", "", map[string]string{
			"admin API disabled: admin.token is empty":       "INFO",
			"check API open without authentication":          "INFO",
			"OTLP receiver open without authentication":      "INFO",
			"health and metrics open without authentication": "INFO",
		}, []string{"admin API enabled (bearer token)", "surfaces without authentication listen on every interface"}},
		{"token, every interface", "0.0.0.0", "s3cret", map[string]string{
			"admin API enabled (bearer token)":                          "INFO",
			"check API open without authentication":                     "INFO",
			"OTLP receiver open without authentication":                 "INFO",
			"surfaces without authentication listen on every interface": "WARN",
		}, []string{"admin API disabled: admin.token is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Server.Host, cfg.Admin.Token = tc.host, tc.token
			var buf syncBuffer
			a, err := New(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&buf, nil)), ShutdownTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := a.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, l := range buf.lines(t) {
				msg, _ := l["msg"].(string)
				seen[msg]++
				if level, ok := tc.want[msg]; ok && l["level"] != level {
					t.Errorf("%q logged at %v, want %s", msg, l["level"], level)
				}
				if strings.HasPrefix(msg, "admin API") {
					eps := jsonString(l["endpoints"])
					if !strings.Contains(eps, `"PUT /v1/policies/{namespace}/{name}"`) || !strings.Contains(eps, `"PUT /v1/dynamic-config/{namespace}/{name}"`) || !strings.Contains(eps, `"POST /v1/explain"`) {
						t.Errorf("%q lists endpoints %v", msg, l["endpoints"])
					}
					if l["addr"] != a.Addr(ListenerHTTP).String() {
						t.Errorf("%q addr = %v", msg, l["addr"])
					}
				}
			}
			for msg := range tc.want {
				if seen[msg] != 1 {
					t.Errorf("%q logged %d times, want once", msg, seen[msg])
				}
			}
			for _, msg := range tc.wantNot {
				if seen[msg] != 0 {
					t.Errorf("%q logged", msg)
				}
			}
		})
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// What other modules mount with HandleHTTP (the gateway's upstream view,
// say) is an operator endpoint too.
func TestHandleHTTPIsOperator(t *testing.T) {
	for _, tc := range []struct {
		token       string
		auth        string
		code        int
		description string
	}{
		{"", "", 403, "no admin.token"},
		{"", "Bearer x", 403, "no admin.token, any bearer"},
		{"s3cret", "", 401, "token configured, none sent"},
		{"s3cret", "bearer s3cret", 200, "token sent"},
	} {
		t.Run(tc.description, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Admin.Token = tc.token
			a, err := New(Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			a.HandleHTTP("GET /v1/extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("extra"))
			}))
			if err := a.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Stop(context.Background()) })
			if r := doRequest(t, "GET", a.testURL("/v1/extra"), "", map[string]string{"Authorization": tc.auth}); r.code != tc.code {
				t.Fatalf("GET /v1/extra = %d %s, want %d", r.code, r.body, tc.code)
			}
		})
	}
}
