package controlpoint

import (
	"fmt"
	"strings"
	"testing"
)

// MayWait: local rate limiters and concurrency limiters (whose flows
// never wait) answer at once; schedulers and an adaptive concurrency
// limiter may queue a flow, unless they are dry runs; a control point
// without policies decides nothing.
func TestMayWait(t *testing.T) {
	for _, tc := range []struct {
		name, policy, cp string
		want             bool
	}{
		{"local rate limiters", fmt.Sprintf(twoLimiters, false), "api", false},
		{"no policy there", fmt.Sprintf(twoLimiters, false), "elsewhere", false},
		{"load scheduler", fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 0.5}}"), "api", true},
		{"load scheduler, dry run", strings.Replace(fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 0.5}}"), "load_scheduler:", "load_scheduler:\n            dry_run: true", 1), "api", false},
		{"concurrency limiter", concurrencyLimiterPolicy, "api", false},
		{"concurrency scheduler", concurrencySchedulerPolicy, "api", true},
		{"adaptive concurrency", adaptivePolicy, "api", true},
		{"quota scheduler", quotaPolicy, "api", true},
	} {
		e := newEngine(t, nil, tc.policy)
		if got := e.MayWait(tc.cp); got != tc.want {
			t.Errorf("%s: MayWait(%q) = %v, want %v", tc.name, tc.cp, got, tc.want)
		}
		if got := NewLocalChecker(e).MayWait(tc.cp); got != tc.want {
			t.Errorf("%s: LocalChecker.MayWait(%q) = %v, want %v", tc.name, tc.cp, got, tc.want)
		}
	}
}
