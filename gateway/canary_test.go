package gateway

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// judge's verdict over a replayed window of samples at t0…
func TestJudge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := &CanaryMetricsConfig{TargetErrorRate: 0.1, TargetP99Latency: 300 * time.Millisecond, MinSamples: 10, Window: 10 * time.Second}
	fast := func(n int, at time.Time, failed bool) []sample {
		var out []sample
		for range n {
			out = append(out, sample{at: at, latency: 10 * time.Millisecond, failed: failed})
		}
		return out
	}
	cat := func(ss ...[]sample) []sample {
		var out []sample
		for _, s := range ss {
			out = append(out, s...)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		now     time.Time
		want    string
	}{
		{"no samples", nil, t0, VerdictNoData},
		{"below min_samples, all failed", fast(9, t0, true), t0, VerdictNoData},
		{"healthy", fast(20, t0, false), t0, VerdictPass},
		{"errors at target", cat(fast(18, t0, false), fast(2, t0, true)), t0, VerdictPass},
		{"errors over target", cat(fast(17, t0, false), fast(3, t0, true)), t0, VerdictFail},
		{"slow p99", cat(fast(90, t0, false), []sample{{at: t0, latency: time.Second}, {at: t0, latency: time.Second}}), t0, VerdictFail},
		{"one slow in a hundred", cat(fast(99, t0, false), []sample{{at: t0, latency: time.Second}}), t0, VerdictPass},
		{"failures aged out", cat(fast(20, t0, true), fast(10, t0.Add(11*time.Second), false)), t0.Add(15 * time.Second), VerdictPass},
		{"everything aged out", fast(20, t0, true), t0.Add(11 * time.Second), VerdictNoData},
	} {
		if got, st := judge(m, tc.samples, tc.now); got != tc.want {
			t.Errorf("%s: verdict %s (%+v), want %s", tc.name, got, st, tc.want)
		}
	}
}

// The analysis series count a route's requests by group and outcome from
// the moment the route has a canary (at 0 before the first request), and
// time them by group.
func TestCanaryAnalysisSeries(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := newCanaryState("checkout", slog.New(slog.DiscardHandler), m)
	count := func(group, outcome string) float64 {
		return testutil.ToFloat64(m.canaryRequests.WithLabelValues("checkout", group, outcome))
	}
	for _, g := range []string{GroupPrimary, GroupCanary} {
		for _, o := range []string{OutcomeOK, OutcomeError} {
			if got := count(g, o); got != 0 {
				t.Errorf("%s %s before any request: %v, want 0", g, o, got)
			}
		}
	}
	now := time.Unix(1000, 0)
	c.observe(now, 10*time.Millisecond, false, false)
	c.observe(now, 10*time.Millisecond, false, false)
	c.observe(now, 20*time.Millisecond, true, false)
	c.observe(now, 30*time.Millisecond, false, true)
	c.observe(now, 40*time.Millisecond, true, true)
	for _, tc := range []struct {
		group, outcome string
		want           float64
	}{{GroupPrimary, OutcomeOK, 2}, {GroupPrimary, OutcomeError, 1}, {GroupCanary, OutcomeOK, 1}, {GroupCanary, OutcomeError, 1}} {
		if got := count(tc.group, tc.outcome); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.group, tc.outcome, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.canaryDuration, "fluxgate_canary_request_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2 (primary, canary)", n)
	}
	m.forgetCanary("checkout")
	if n := testutil.CollectAndCount(m.canaryRequests, "fluxgate_canary_requests_total"); n != 0 {
		t.Errorf("%d request series after forgetCanary, want 0", n)
	}
}
