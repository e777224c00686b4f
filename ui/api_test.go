package ui_test

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/ui"
)

const adminToken = "s3cret-admin"

// livePolicy: a variable (dynamic config "base") times a constant drives a
// rate limiter's fill amount, and BASE / DIVISOR goes invalid when the
// dynamic config sets divisor to 0. The bucket holds one token that comes
// back once an hour, so the second check is rejected.
const livePolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: live}
spec:
  circuit:
    evaluation_interval: 100ms
    components:
      - variable:
          constant_output: {value: 10}
          config_key: base
          out_ports: {output: {signal_name: BASE}}
      - arithmetic_combinator:
          operator: mul
          in_ports: {lhs: {signal_name: BASE}, rhs: {constant_signal: {value: 2}}}
          out_ports: {output: {signal_name: FILL}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1}}
              fill_amount: {signal_name: FILL}
            parameters: {interval: 1h}
      - variable:
          constant_output: {value: 1}
          config_key: divisor
          out_ports: {output: {signal_name: DIVISOR}}
      - arithmetic_combinator:
          operator: div
          in_ports: {lhs: {signal_name: BASE}, rhs: {signal_name: DIVISOR}}
          out_ports: {output: {signal_name: RATIO}}
`

func startAgent(t *testing.T, token string) *agent.Agent {
	t.Helper()
	cfg := agenttest.Config(t, livePolicy)
	cfg.Admin.Token = token
	return agenttest.Start(t, cfg)
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func call(t *testing.T, method, url, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// The JSON of the live view follows the rule of the other admin reads;
// the page itself holds no data, is served without a token while the
// admin endpoints are on, and is off (403) like them otherwise.
func TestAccessRules(t *testing.T) {
	on := agenttest.URL(startAgent(t, adminToken))
	off := agenttest.URL(startAgent(t, ""))
	reads := []string{"/v1/ui/graph/default/live", "/v1/ui/history/default/live", "/v1/ui/flows", "/v1/signals/default/live",
		"/v1/ui/trends/flux_meters", "/v1/ui/trends/gateway", "/v1/ui/trends/control_points"}
	for _, path := range reads {
		for _, tc := range []struct {
			base, token string
			want        int
		}{
			{off, "", http.StatusForbidden},
			{off, adminToken, http.StatusForbidden},
			{on, "", http.StatusUnauthorized},
			{on, "wrong", http.StatusUnauthorized},
			{on, adminToken, http.StatusOK},
		} {
			if got := call(t, "GET", tc.base+path, tc.token, ""); got.code != tc.want {
				t.Errorf("GET %s (admin on: %v, token %q) = %d, want %d: %s", path, tc.base == on, tc.token, got.code, tc.want, got.body)
			}
		}
	}
	for _, path := range []string{"/ui/", "/ui/policies/default/live", "/ui/app.js", "/ui/vendor/uPlot.iife.min.js"} {
		if got := call(t, "GET", off+path, "", ""); got.code != http.StatusForbidden {
			t.Errorf("GET %s with the admin endpoints off = %d, want 403", path, got.code)
		}
		got := call(t, "GET", on+path, "", "")
		if got.code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, got.code)
		}
		if csp := got.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if strings.Contains(got.body, adminToken) {
			t.Errorf("GET %s: the page holds the token", path)
		}
	}
	if got := call(t, "GET", on+"/ui/policies/default/live", "", ""); !strings.Contains(got.body, `src="/ui/app.js"`) {
		t.Errorf("a deep link does not serve the page: %s", got.body)
	}
	if got := call(t, "GET", on+"/ui/app.js", "", ""); !strings.Contains(got.header.Get("Content-Type"), "javascript") {
		t.Errorf("app.js served as %q", got.header.Get("Content-Type"))
	}
}

func TestGraphAndHistoryJSON(t *testing.T) {
	base := agenttest.URL(startAgent(t, adminToken))
	var g ui.Graph
	got := call(t, "GET", base+"/v1/ui/graph/default/live", adminToken, "")
	if err := json.Unmarshal([]byte(got.body), &g); err != nil || got.code != 200 {
		t.Fatalf("graph = %d %s", got.code, got.body)
	}
	if len(g.Nodes) != 5+2+1 || g.Layers < 3 || g.IntervalMs != 100 { // 5 components, 2 constants, the RATIO sink
		t.Fatalf("graph = %+v", g)
	}
	if got := call(t, "GET", base+"/v1/ui/graph/default/nope", adminToken, ""); got.code != 404 {
		t.Errorf("graph of a missing policy = %d", got.code)
	}
	if got := call(t, "GET", base+"/v1/ui/history/default/live?since=x", adminToken, ""); got.code != 400 {
		t.Errorf("history since=x = %d", got.code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var h ui.HistoryResponse
		got := call(t, "GET", base+"/v1/ui/history/default/live", adminToken, "")
		if err := json.Unmarshal([]byte(got.body), &h); err != nil {
			t.Fatalf("history = %d %s", got.code, got.body)
		}
		if h.Points != ui.DefaultHistoryPoints || h.EveryMs != 1000 || len(h.Signals) != 4 {
			t.Fatalf("history = %+v", h)
		}
		fill := h.Signals[2] // BASE DIVISOR FILL RATIO
		if fill.Name == "FILL" && len(fill.V) >= 2 && fill.V[len(fill.V)-1] != nil && *fill.V[len(fill.V)-1] == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no two samples of FILL = 20: %+v", h.Signals)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := call(t, "GET", base+"/v1/ui/flows", adminToken, ""); !strings.Contains(got.body, `"decisions"`) {
		t.Errorf("flows = %s", got.body)
	}
}

// meteredPolicy has flux meter lat on control point api, buckets 5, 50
// and 500 ms: flows of 30 ms all fall in (5, 50], so the p50 is 27.5 and
// the p99 49.55 by linear interpolation.
const meteredPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: metered}
spec:
  resources:
    flux_meters:
      lat: {selectors: [{control_point: api}], static_buckets: {buckets: [5, 50, 500]}}
`

// The flux meter history is a PromQL range query over the agent's
// embedded TSDB: flows observed show as percentiles and a rate.
func TestTrendsFromTheEmbeddedTSDB(t *testing.T) {
	cfg := agenttest.Config(t, meteredPolicy)
	cfg.Admin.Token = adminToken
	cfg.TSDB.ScrapeInterval = 200 * time.Millisecond
	a := agenttest.Start(t, cfg)
	base := agenttest.URL(a)
	deadline := time.Now().Add(20 * time.Second)
	var tr ui.Trends
	for {
		for range 10 {
			a.FluxMeters().Observe(fluxmeter.Flow{ControlPoint: "api", FluxMeters: []string{"default/metered/lat"}, Status: 200, WorkloadMillis: 30})
		}
		got := call(t, "GET", base+"/v1/ui/trends/flux_meters", adminToken, "")
		if got.code != http.StatusOK {
			t.Fatalf("trends = %d %s", got.code, got.body)
		}
		tr = ui.Trends{}
		if err := json.Unmarshal([]byte(got.body), &tr); err != nil {
			t.Fatal(err)
		}
		if last := trendLast(tr, "p50"); last != nil && *last == 27.5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no p50 of 27.5 ms: %s", got.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tr.Source != "the embedded TSDB" || tr.StepMs != 3000 || len(tr.T) > ui.TrendPoints+1 || !tr.Tail || tr.RateWindowMs != 15000 {
		t.Errorf("answer: source %q, step %d, %d times, tail %v, rate window %d", tr.Source, tr.StepMs, len(tr.T), tr.Tail, tr.RateWindowMs)
	}
	if p99 := trendLast(tr, "p99"); p99 == nil || math.Abs(*p99-49.55) > 1e-9 {
		t.Errorf("p99 = %v, want 49.55", p99)
	}
	if rate := trendLast(tr, "rate"); rate == nil || *rate <= 0 {
		t.Errorf("rate = %v, want > 0", rate)
	}
	for _, s := range tr.Series {
		if s.Labels["flux_meter_name"] != "lat" || len(s.V) != len(tr.T) {
			t.Errorf("series %v has %d values for %d times", s.Labels, len(s.V), len(tr.T))
		}
	}
	// The gateway view answers too, with nothing to show: no gateway runs.
	got := call(t, "GET", base+"/v1/ui/trends/gateway", adminToken, "")
	if got.code != http.StatusOK || !strings.Contains(got.body, `"series":[]`) {
		t.Errorf("gateway trends without a gateway = %d %s", got.code, got.body)
	}
}

// trendLast is the value at the last time of the flux meter series stat.
func trendLast(tr ui.Trends, stat string) *float64 {
	for _, s := range tr.Series {
		if s.Labels["stat"] == stat && len(s.V) > 0 {
			return s.V[len(s.V)-1]
		}
	}
	return nil
}
