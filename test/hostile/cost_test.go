package hostile

import (
	"fmt"
	"net/http"
	"testing"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// costPolicy limits each user of the control point costly to 5 tokens an
// hour, a flow costing the value of its label cost.
const costPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: cost, namespace: hostile}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: costly}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters: {limit_by_label_key: user, interval: 1h}
            request_parameters: {tokens_label_key: cost}
`

// A client that states its own cost as 0, negative, NaN or infinite, in
// W3C baggage through the gateway or as a label of a check, does not get
// past the limiter: each flow costs at least the default token, so a
// user with 5 tokens gets 5 flows, whatever it claims.
func TestClientCannotZeroItsCost(t *testing.T) {
	up := newUpstream(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, spec{
		gateway:  true,
		extra:    fmt.Sprintf(gatewayConfig, listen, "auto", up),
		policies: map[string]string{"cost.yaml": costPolicy},
	})
	const tries = 12
	costs := []string{"0", "-1", "-0", "NaN", "-Inf", "+Inf", "1e-400", "0x0", "", "abc"}
	hc := &http.Client{}
	for _, cost := range costs {
		user := "baggage-" + cost
		admitted := 0
		for range tries {
			code, _, err := httpDo(t.Context(), hc, http.MethodGet, "http://"+listen+"/cost", nil,
				map[string]string{"Baggage": "user=" + user + ",cost=" + cost})
			if err != nil {
				t.Fatal(err)
			}
			switch code {
			case http.StatusOK:
				admitted++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("baggage cost=%q: status %d", cost, code)
			}
		}
		if admitted != 5 {
			t.Errorf("baggage cost=%q through the gateway: %d of %d requests admitted, want 5", cost, admitted, tries)
		}
	}
	grpc := p.checkClient(t)
	for _, cost := range costs {
		user := "label-" + cost
		admitted := 0
		for range tries {
			resp, err := grpc.Check(t.Context(), &pb.CheckRequest{ControlPoint: "costly", Labels: map[string]string{"user": user, "cost": cost}, Tokens: 1})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetDecisionType() == pb.DecisionType_DECISION_TYPE_ACCEPTED {
				admitted++
			}
		}
		if admitted != 5 {
			t.Errorf("label cost=%q over gRPC: %d of %d checks admitted, want 5", cost, admitted, tries)
		}
	}
}
