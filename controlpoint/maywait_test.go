package controlpoint

import (
	"fmt"
	"testing"
)

// MayWait: local rate limiters answer at once; a load scheduler may queue
// a flow; a control point without policies decides nothing.
func TestMayWait(t *testing.T) {
	for _, tc := range []struct {
		name, policy, cp string
		want             bool
	}{
		{"local rate limiters", fmt.Sprintf(twoLimiters, false), "api", false},
		{"no policy there", fmt.Sprintf(twoLimiters, false), "elsewhere", false},
		{"load scheduler", fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 0.5}}"), "api", true},
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
