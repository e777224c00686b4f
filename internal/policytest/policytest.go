// Package policytest holds policy fixtures that tests in several
// packages load (the check servers, the Go SDK, the nginx and Envoy
// end-to-end tests), written once so that they cannot drift apart. It
// imports only the standard library, so any test may use it without
// linking another package's tests.
package policytest

import (
	"fmt"
	"time"
)

// OneSlot returns policy one-slot (namespace default): an
// adaptive_concurrency component at controlPoint whose limit is fixed at
// one flow and which queues nobody for more than 1 ms, so a flow that
// arrives while another holds the slot (its end not yet reported) is
// rejected with REJECT_REASON_NO_TOKENS.
func OneSlot(controlPoint string) string { return oneSlot(controlPoint, "") }

// OneSlotExpiring is OneSlot whose flows free their slot after
// maxFlowDuration if their end is not reported.
func OneSlotExpiring(controlPoint string, maxFlowDuration time.Duration) string {
	return oneSlot(controlPoint, ", max_flow_duration: "+maxFlowDuration.String())
}

func oneSlot(controlPoint, extra string) string {
	return fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: one-slot, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: %q}]
            parameters: {initial_concurrency: 1, min_concurrency: 1, max_concurrency: 1, max_queue_delay: 1ms%s}
`, controlPoint, extra)
}
