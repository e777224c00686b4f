package controlpoint

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The Rego modules of one check share one time budget
// (classifier.RegoTimeout), rather than each having its own: three slow
// modules make a check wait about 50 ms, not 150.
func TestRegoModulesShareOneBudgetPerCheck(t *testing.T) {
	slow := `
        rego:
          module: |
            package p
            slow := count([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)])
          labels: {slow: {}}`
	src := `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: slow-rego}
spec:
  resources:
    classifiers:
      - selectors: [{control_point: ingress}]` + slow + `
      - selectors: [{control_point: ingress}]` + slow + `
      - selectors: [{control_point: ingress}]` + slow + `
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {constant_signal: {value: 100}}, fill_amount: {constant_signal: {value: 100}}}
            parameters: {interval: 1s}
`
	e := newEngine(t, prometheus.NewRegistry(), src)
	best := time.Hour
	var d *Decision
	for range 3 { // the best of three: the machine is shared
		start := time.Now()
		d = check(e, t0, "ingress", map[string]string{})
		best = min(best, time.Since(start))
	}
	if len(d.Classifiers) != 3 {
		t.Fatalf("%d classifier results, want 3", len(d.Classifiers))
	}
	for _, c := range d.Classifiers {
		if c.Error == "" {
			t.Errorf("classifier %d: no error from a module that cannot finish", c.Index)
		}
	}
	if !strings.Contains(d.Classifiers[0].Error, "took longer than") || !strings.Contains(d.Classifiers[0].Error, "50ms") {
		t.Errorf("first module's error %q, want it blamed for taking longer than 50ms", d.Classifiers[0].Error)
	}
	if best > 100*time.Millisecond {
		t.Errorf("a check with three slow Rego modules took %v, want about one budget (50ms)", best)
	}
}
