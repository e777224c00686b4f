package gateway

import (
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
)

// judge's verdict over a replayed window of samples at t0…
func TestJudge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := &agent.CanaryMetricsConfig{TargetErrorRate: 0.1, TargetP99Latency: 300 * time.Millisecond, MinSamples: 10, Window: 10 * time.Second}
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
