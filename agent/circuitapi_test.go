package agent

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/policies"
)

// A circuit whose variable drives a rate limiter's capacity: changing the
// dynamic config changes admission without a policy reload.
const dynamicLimit = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: dynamic-limit}
spec:
  circuit:
    evaluation_interval: 50ms
    components:
      - variable:
          constant_output: {value: 0}
          config_key: capacity
          out_ports: {output: {signal_name: CAPACITY}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {signal_name: CAPACITY}
              fill_amount: {signal_name: CAPACITY}
            parameters: {interval: 100ms}
`

func TestDynamicConfigDrivesRateLimiter(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), dynamicLimit)
	a := startAgent(t, testConfig(dir))
	check := func() string {
		r := doRequest(t, "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, nil)
		var resp struct {
			DecisionType string `json:"decision_type"`
		}
		if err := json.Unmarshal([]byte(r.body), &resp); err != nil {
			t.Fatalf("%d %s", r.code, r.body)
		}
		return resp.DecisionType
	}
	waitFor(t, "capacity 0 to reject", func() bool { return check() == "DECISION_TYPE_REJECTED" })

	r := adminRequest(t, "PUT", a.testURL("/v1/dynamic-config/default/dynamic-limit"), `{"capacity": 3}`, nil)
	if r.code != 200 {
		t.Fatalf("PUT dynamic config = %d %s", r.code, r.body)
	}
	waitFor(t, "the new capacity to admit", func() bool { return check() == "DECISION_TYPE_ACCEPTED" })

	r = adminRequest(t, "GET", a.testURL("/v1/signals/default/dynamic-limit"), "", nil)
	var sig api.SignalsResponse
	if err := json.Unmarshal([]byte(r.body), &sig); err != nil {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if len(sig.Signals) != 1 || sig.Signals[0].Name != "CAPACITY" || sig.Signals[0].Value != 3 || !sig.Signals[0].Valid {
		t.Fatalf("signals = %+v", sig)
	}
	if r := adminRequest(t, "GET", a.testURL("/v1/signals/default/nope"), "", nil); r.code != 404 {
		t.Fatalf("signals of a missing policy = %d", r.code)
	}
	for _, bad := range []string{`[1]`, `{"capacity": "lots"}`, `{`} {
		if r := adminRequest(t, "PUT", a.testURL("/v1/dynamic-config/default/dynamic-limit"), bad, nil); r.code != 400 {
			t.Errorf("PUT %s = %d", bad, r.code)
		}
	}
}

func TestCircuitWiringErrorRefusesPolicyWithPosition(t *testing.T) {
	dir := t.TempDir()
	bad := strings.Replace(dynamicLimit, "bucket_capacity: {signal_name: CAPACITY}", "bucket_capacity: {signal_name: CAPACTY}", 1)
	writeFile(t, filepath.Join(dir, "p.yaml"), bad)
	a := startAgent(t, testConfig(dir))
	snap := a.Store().Snapshot()
	if len(snap.Entries) != 0 || len(snap.Errors) != 1 {
		t.Fatalf("entries %d, errors %v", len(snap.Entries), snap.Errors)
	}
	want := filepath.Join(dir, "p.yaml") + `:12:9: flow_control.rate_limiter: in_ports.bucket_capacity: signal "CAPACTY" has no producer (did you mean "CAPACITY"?)`
	if got := snap.Errors[0].Err.Error(); !strings.Contains(got, want) {
		t.Fatalf("error = %q, want it to contain %q", got, want)
	}
}

// The adaptive loop inside one agent: spans → flux meter → embedded TSDB →
// PromQL signal in a circuit.
const selfQuery = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: loop}
spec:
  resources:
    flux_meters:
      m: {selectors: [{control_point: ingress}], static_buckets: {buckets: [10, 100]}}
  circuit:
    evaluation_interval: 100ms
    components:
      - query:
          promql:
            query_string: sum(increase(flux_meter_count{flux_meter_name="m"}[1m]))
            out_ports: {output: {signal_name: FLOWS}}
`

func TestCircuitQueriesTheEmbeddedTSDB(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), selfQuery)
	cfg := testConfig(dir)
	cfg.TSDB.ScrapeInterval = 100 * time.Millisecond
	a := startAgent(t, cfg)

	body := `{"resourceSpans":[{"scopeSpans":[{"spans":[` +
		`{"name":"a","attributes":[{"key":"fluxgate.control_point","value":{"stringValue":"ingress"}},{"key":"workload_duration_ms","value":{"doubleValue":5}}]},` +
		`{"name":"b","attributes":[{"key":"fluxgate.control_point","value":{"stringValue":"ingress"}},{"key":"workload_duration_ms","value":{"doubleValue":50}}]}]}]}]}`
	url := "http://" + a.Addr(ListenerOTLPHTTP).String() + "/v1/traces"
	// The first export creates the series; later ones make it grow, so
	// increase() has two samples to work with.
	for i := 0; i < 3; i++ {
		if r := doRequest(t, "POST", url, body, map[string]string{"Content-Type": "application/json"}); r.code != 200 {
			t.Fatalf("OTLP export = %d %s", r.code, r.body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	waitFor(t, "the FLOWS signal", func() bool {
		readings, ok := a.circuits.Signals(policies.Key{Namespace: "default", Name: "loop"})
		return ok && len(readings) == 1 && readings[0].Valid && readings[0].Value > 0
	})
}
