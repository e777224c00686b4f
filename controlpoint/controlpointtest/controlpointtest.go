// Package controlpointtest holds fixtures shared by the tests of the
// decision engine, its adapters and the SDK.
package controlpointtest

// PerUserLimit is the policy of issue 3, verbatim: 5 flows per 60 s for
// each user of the free tier at the ingress control point.
const PerUserLimit = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-user-limit, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {tier: free}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters: {limit_by_label_key: user, interval: 60s}
`
