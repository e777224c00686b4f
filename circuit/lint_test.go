package circuit

import (
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

const quantilePolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: slo}
spec:
  resources:
    flux_meters:
      lat: {selectors: [{control_point: ingress}], static_buckets: {buckets: [100, 250, 500]}}
  circuit:
    components:
      - query:
          promql:
            query_string: histogram_quantile(0.95, sum(rate(flux_meter_bucket{flux_meter_name="lat"}[1m])) by (le))
            out_ports: {output: {signal_name: P95}}
      - decider:
          operator: gt
          in_ports: {lhs: {signal_name: P95}, rhs: {constant_signal: {value: THRESHOLD}}}
          out_ports: {output: {signal_name: SLOW}}
`

func TestLintQuantileThresholdNotABucketBoundary(t *testing.T) {
	for _, tc := range []struct {
		threshold string
		want      string
	}{
		{"300", `14:9: warning: decider compares P95, a quantile of flux meter "lat", with 300, which is not one of its bucket boundaries (100, 250, 500)`},
		{"250", ""},
	} {
		docs, err := policies.Parse("slo.yaml", []byte(strings.Replace(quantilePolicy, "THRESHOLD", tc.threshold, 1)))
		if err != nil {
			t.Fatal(err)
		}
		got := Lint(docs[0].Object.(*policies.Policy))
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("threshold %s: unexpected warnings %v", tc.threshold, got)
		case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0].Error(), tc.want)):
			t.Errorf("threshold %s: warnings %v, want one starting %q", tc.threshold, got, tc.want)
		}
	}
}
