package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

// keyPolicy is one rate limiter of 2 tokens per hour keyed by params
// (key_extractor and friends) on the given backend.
func keyPolicy(t *testing.T, name, backend, params string) []*policies.Policy {
	t.Helper()
	y := fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: %s}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {constant_signal: {value: 2}}, fill_amount: {constant_signal: {value: 2}}}
            parameters: {interval: 1h, backend: %s, %s}
`, name, backend, params)
	docs, err := policies.Parse(name+".yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return []*policies.Policy{docs[0].Object.(*policies.Policy)}
}

// Each key extractor, on the local and the Redis backend: flows with the
// same key share a bucket (2 tokens), flows with different keys do not,
// spoofed X-Forwarded-For entries do not change the key, an API key is
// never the bucket key, and flows without a key share the bucket
// "unknown".
func TestKeyExtractors(t *testing.T) {
	srv := Start(t)
	type keyedFlow struct {
		labels  map[string]string
		key     string // the LimitKey the decision reports; "" = do not check
		allowed bool
	}
	src := flow.LabelSourceAddress
	xff := flow.HeaderLabel("X-Forwarded-For")
	auth := flow.HeaderLabel("Authorization")
	cases := []struct {
		name   string
		params string
		flows  []keyedFlow
	}{
		{"header", "key_extractor: header.X-Client-Id", []keyedFlow{
			{map[string]string{"http.request.header.x_client_id": "a"}, "a", true},
			{map[string]string{"http.request.header.x_client_id": "a"}, "a", true},
			{map[string]string{"http.request.header.x_client_id": "a"}, "a", false},
			{map[string]string{"http.request.header.x_client_id": "b"}, "b", true},
			{map[string]string{}, "unknown", true},
			{map[string]string{"other": "x"}, "unknown", true},
			{map[string]string{}, "unknown", false},
		}},
		{"label", "key_extractor: label.user", []keyedFlow{
			{map[string]string{"user": "u"}, "u", true},
			{map[string]string{"user": "u"}, "u", true},
			{map[string]string{"user": "u"}, "u", false},
		}},
		{"limit_by_label_key", "limit_by_label_key: user", []keyedFlow{
			{map[string]string{"user": "u"}, "u", true},
			{map[string]string{}, "unknown", true},
		}},
		{"ip behind one proxy", "key_extractor: ip, trusted_proxies: 1", []keyedFlow{
			{map[string]string{src: "10.0.0.1", xff: "203.0.113.9"}, "203.0.113.9", true},
			// the same client, prepending addresses to escape its bucket
			{map[string]string{src: "10.0.0.1", xff: "1.1.1.1, 203.0.113.9"}, "203.0.113.9", true},
			{map[string]string{src: "10.0.0.1", xff: "9.9.9.9,8.8.8.8, 203.0.113.9"}, "203.0.113.9", false},
			{map[string]string{src: "10.0.0.1", xff: "198.51.100.7"}, "198.51.100.7", true},
		}},
		{"ip direct", "key_extractor: ip", []keyedFlow{
			{map[string]string{src: "198.51.100.7", xff: "1.1.1.1"}, "198.51.100.7", true},
			{map[string]string{src: "198.51.100.7", xff: "2.2.2.2"}, "198.51.100.7", true},
			{map[string]string{src: "198.51.100.7", xff: "3.3.3.3"}, "198.51.100.7", false},
		}},
		{"api key", "key_extractor: api_key", []keyedFlow{
			{map[string]string{auth: "Bearer tok-1"}, "", true},
			{map[string]string{flow.HeaderLabel("X-API-Key"): "tok-1"}, "", true},
			{map[string]string{auth: "Bearer tok-1"}, "", false},
			{map[string]string{auth: "Bearer tok-2"}, "", true},
		}},
	}
	for _, backend := range []string{"local", "redis"} {
		for i, c := range cases {
			t.Run(backend+"/"+c.name, func(t *testing.T) {
				params := c.params
				if backend == "redis" {
					params += ", redis_timeout: 500ms, failure_mode: fail_closed"
				}
				e := newEngine(t, srv, keyPolicy(t, fmt.Sprintf("keys-%s-%d", backend, i), backend, params))
				now := time.Now()
				for j, f := range c.flows {
					var d controlpoint.Decision
					e.Check(context.Background(), now, &controlpoint.Request{ControlPoint: "ingress", Labels: f.labels}, &d)
					ld := d.Limiters[0]
					if ld.Failure != "" {
						t.Fatalf("flow %d: %s", j, ld.Failure)
					}
					if d.Accepted != f.allowed || f.key != "" && ld.LimitKey != f.key {
						t.Errorf("flow %d %v: accepted %v, key %q; want %v, %q", j, f.labels, d.Accepted, ld.LimitKey, f.allowed, f.key)
					}
					if strings.Contains(ld.LimitKey, "tok-") {
						t.Errorf("flow %d: the API key is in the bucket key %q", j, ld.LimitKey)
					}
				}
			})
		}
	}
	// No Redis key holds an API key.
	keys, err := srv.Client(t).Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "tok-") {
			t.Errorf("Redis key %q holds an API key", k)
		}
	}
	t.Logf("Redis keys: %v", keys)
}
