package gateway

import (
	"net/http"
	"testing"

	"github.com/fluxgate/fluxgate/gateway"
)

// The gateway's upstream view reveals targets, so it is an operator
// endpoint of the agent: it wants the admin token.
func TestUpstreamViewWantsAdminToken(t *testing.T) {
	b := newBackend(t, "a")
	s := startStack(t, oneRoute(gateway.UpstreamConfig{Name: "checkout", Targets: targets(b)}), nil, gateway.ServiceOptions{})
	for _, tc := range []struct {
		auth string
		code int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer " + adminToken, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.api+"/v1/gateway/upstreams", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := s.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET /v1/gateway/upstreams with %q = %d, want %d", tc.auth, resp.StatusCode, tc.code)
		}
	}
}
