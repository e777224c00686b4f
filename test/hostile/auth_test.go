package hostile

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// zeroPolicy is the attack of issue 14: a limiter of capacity 0 on every
// flow of ingress, which rejects them all once installed.
const zeroPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: zero, namespace: hostile}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 0}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
`

// writes are the calls that change the agent's state.
var writes = []struct{ method, path, body string }{
	{http.MethodPut, "/v1/policies/hostile/zero", zeroPolicy},
	{http.MethodDelete, "/v1/policies/hostile/per-user", ""},
	{http.MethodPut, "/v1/dynamic-config/hostile/per-user", `{"x": 1}`},
}

// Nothing changes state without the admin token: with admin.token unset
// every write answers 403; with it set, a write without the token or with
// a wrong one answers 401 (a case-insensitive "bearer" scheme is
// accepted with the right token). Flows are still admitted afterwards:
// the zero-capacity policy never got in. With check.token and otlp.token
// set, checks and spans without them are refused too.
func TestNoStateChangeWithoutToken(t *testing.T) {
	hc := &http.Client{}
	admitted := func(t *testing.T, p *proc) {
		t.Helper()
		resp, err := p.checkClientTok(t, "").Check(t.Context(), &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "after"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
			t.Errorf("a flow after the refused writes: %v, want accepted (a write got through)", resp.GetDecisionType())
		}
	}
	t.Run("no admin token", func(t *testing.T) {
		p := start(t, spec{policies: map[string]string{"per-user.yaml": perUserPolicy}})
		for _, w := range writes {
			for _, auth := range []string{"", "Bearer guess", "Bearer "} {
				code, body, err := httpDo(t.Context(), hc, w.method, "http://"+p.api+w.path, strings.NewReader(w.body),
					map[string]string{"Authorization": auth, "Content-Type": "application/yaml"})
				if err != nil {
					t.Fatal(err)
				}
				if code != http.StatusForbidden || !bytes.Contains(body, []byte("admin_disabled")) {
					t.Errorf("%s %s (Authorization %q) without admin.token: %d %s, want 403 admin_disabled", w.method, w.path, auth, code, body)
				}
			}
		}
		admitted(t, p)
		refused(t, p, map[string]float64{"admin/disabled": float64(3 * len(writes))})
	})
	t.Run("admin token", func(t *testing.T) {
		const token = "s3cret-admin-token-0123456789abcdef"
		p := start(t, spec{
			extra:    "admin: {token: " + token + "}\ncheck: {token: check-" + token + "}\n",
			otlp:     "token: otlp-" + token,
			policies: map[string]string{"per-user.yaml": perUserPolicy},
		})
		for _, w := range writes {
			for _, auth := range []string{"", "Bearer wrong", "Basic " + token, token, "Bearer " + token + "x", "Bearer check-" + token} {
				code, body, err := httpDo(t.Context(), hc, w.method, "http://"+p.api+w.path, strings.NewReader(w.body),
					map[string]string{"Authorization": auth, "Content-Type": "application/yaml"})
				if err != nil {
					t.Fatal(err)
				}
				if code != http.StatusUnauthorized {
					t.Errorf("%s %s (Authorization %q): %d %s, want 401", w.method, w.path, auth, code, body)
				}
			}
		}
		// The right token, with the scheme in any case, is let in: the
		// refusals above were about the token.
		code, body, err := httpDo(t.Context(), hc, http.MethodGet, "http://"+p.api+"/v1/policies", nil, map[string]string{"Authorization": "bEARER " + token})
		if err != nil || code != http.StatusOK {
			t.Errorf("GET /v1/policies with the admin token: %d %s %v, want 200", code, body, err)
		}
		// Checks and spans without their tokens are refused.
		if _, err := p.checkClientTok(t, "").Check(t.Context(), &pb.CheckRequest{ControlPoint: "ingress"}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC check without check.token: %v, want Unauthenticated", err)
		}
		code, _, err = httpDo(t.Context(), hc, http.MethodPost, "http://"+p.api+"/v1/check", strings.NewReader(`{"control_point":"ingress"}`), map[string]string{"Authorization": "Bearer " + token})
		if err != nil || code != http.StatusUnauthorized {
			t.Errorf("POST /v1/check with the admin token instead of check.token: %d %v, want 401", code, err)
		}
		code, _, err = httpDo(t.Context(), hc, http.MethodPost, "http://"+p.otlpHTTP+"/v1/traces", strings.NewReader(""), map[string]string{"Content-Type": "application/x-protobuf"})
		if err != nil || code != http.StatusUnauthorized {
			t.Errorf("OTLP without otlp.token: %d %v, want 401", code, err)
		}
		resp, err := p.checkClientTok(t, "check-"+token).Check(t.Context(), &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "after"}})
		if err != nil || resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
			t.Errorf("a flow with check.token after the refused writes: %v %v, want accepted", resp.GetDecisionType(), err)
		}
		refused(t, p, map[string]float64{
			"admin/missing_token": float64(3 * len(writes)), // none, Basic, no scheme
			"admin/wrong_token":   float64(3 * len(writes)),
			"admin/disabled":      0,
			"check/missing_token": 1,
			"check/wrong_token":   1,
			"otlp/missing_token":  1,
		})
	})
}

// refused asserts fluxgate_api_refused_total by "surface/reason".
func refused(t *testing.T, p *proc, want map[string]float64) {
	t.Helper()
	mx := p.scrape(t)
	for k, n := range want {
		surface, reason, _ := strings.Cut(k, "/")
		if got := metric(mx, "fluxgate_api_refused_total", `surface="`+surface+`"`, `reason="`+reason+`"`); got != n {
			t.Errorf("fluxgate_api_refused_total{surface=%q,reason=%q} = %v, want %v", surface, reason, got, n)
		}
	}
}
