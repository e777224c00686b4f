package aperture

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fluxgate/fluxgate/agent"
	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
)

// schedulersPolicy is an Aperture policy, as Aperture's guides write
// them: one flow in flight per user at "chat" (concurrency limiter) and
// a quota of 2 per API key at "quota" (quota scheduler).
const schedulersPolicy = `apiVersion: fluxninja.com/v1alpha1
kind: Policy
metadata:
  name: limits
spec:
  circuit:
    evaluation_interval: 1s
    components:
      - flow_control:
          concurrency_limiter:
            in_ports:
              max_concurrency: {constant_signal: {value: 1}}
            parameters:
              limit_by_label_key: user_id
              max_inflight_duration: 60s
            selectors:
              - control_point: chat
      - flow_control:
          quota_scheduler:
            in_ports:
              bucket_capacity: {constant_signal: {value: 2}}
              fill_amount: {constant_signal: {value: 2}}
            rate_limiter:
              interval: 3600s
              limit_by_label_key: api_key
            scheduler:
              workloads:
                - name: interactive
                  label_matcher: {match_labels: {call_type: interactive}}
                  parameters: {priority: 200, queue_timeout: 10ms}
            selectors:
              - control_point: quota
`

// startPolicyAgent runs an agent with src as its only policy file and
// returns its HTTP base URL and gRPC address.
func startPolicyAgent(t *testing.T, src string) (httpURL, grpcAddr string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort, cfg.Server.GRPCPort, cfg.Metrics.Port, cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0, 0, 0, 0
	cfg.Policies.Dir = dir
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Errorf("stop agent: %v", err)
		}
	})
	return "http://" + a.Addr(agent.ListenerHTTP).String(), a.Addr(agent.ListenerGRPC).String()
}

func postJSON(t *testing.T, url, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return out
}

// TestApertureConcurrencyLimiterOnAgent: through a real agent's HTTP API,
// the Aperture concurrency limiter admits a user's first flow, rejects the
// second while the first holds the slot, and admits it once the first's
// end is posted to /v1/flow/end.
func TestApertureConcurrencyLimiterOnAgent(t *testing.T) {
	base, _ := startPolicyAgent(t, schedulersPolicy)
	check := `{"control_point":"chat","labels":{"user_id":"alice"}}`
	first := postJSON(t, base+"/v1/check", check)
	id, _ := first["flow_id"].(string)
	if first["decision_type"] != "DECISION_TYPE_ACCEPTED" || id == "" || id == "0" {
		t.Fatalf("first flow: %v, want accepted with a flow id", first)
	}
	second := postJSON(t, base+"/v1/check", check)
	if second["decision_type"] != "DECISION_TYPE_REJECTED" || second["reject_reason"] != "REJECT_REASON_NO_TOKENS" {
		t.Fatalf("second flow while the first holds the slot: %v, want rejected no_tokens", second)
	}
	if other := postJSON(t, base+"/v1/check", `{"control_point":"chat","labels":{"user_id":"bob"}}`); other["decision_type"] != "DECISION_TYPE_ACCEPTED" {
		t.Fatalf("bob's flow: %v, want accepted (his own count)", other)
	}
	if end := postJSON(t, base+"/v1/flow/end", `{"flow_id":"`+id+`"}`); end["found"] != true {
		t.Fatalf("flow end: %v", end)
	}
	if again := postJSON(t, base+"/v1/check", check); again["decision_type"] != "DECISION_TYPE_ACCEPTED" {
		t.Fatalf("after the first flow's end: %v, want accepted", again)
	}
}

// TestApertureSchedulersOverApertureAPI: Aperture's own check API answers
// with concurrency_limiter_info carrying the request_id that FlowEnd
// returns, and with quota_scheduler_info naming the key and workload.
func TestApertureSchedulersOverApertureAPI(t *testing.T) {
	_, addr := startPolicyAgent(t, schedulersPolicy)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := ap.NewFlowControlServiceClient(conn)
	ctx := context.Background()
	req := &ap.CheckRequest{ControlPoint: "chat", Labels: map[string]string{"user_id": "carol"}, ExpectEnd: true}
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	info := resp.GetLimiterDecisions()[0].GetConcurrencyLimiterInfo()
	if resp.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED || info.GetLabel() != "carol" || info.GetRequestId() == "" {
		t.Fatalf("check: %v, want accepted with concurrency_limiter_info label carol and a request_id", resp)
	}
	if busy, _ := c.Check(ctx, req); busy.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_REJECTED || busy.GetRejectReason() != ap.CheckResponse_REJECT_REASON_NO_TOKENS {
		t.Fatalf("second check: %v, want rejected no_tokens", busy)
	}
	end, err := c.FlowEnd(ctx, &ap.FlowEndRequest{ControlPoint: "chat", InflightRequests: []*ap.InflightRequestRef{{RequestId: info.GetRequestId()}}})
	if err != nil || !end.GetTokenReturnStatuses()[0].GetReturned() {
		t.Fatalf("FlowEnd: %v %v", end, err)
	}
	if again, _ := c.Check(ctx, req); again.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED {
		t.Fatalf("after FlowEnd: %v, want accepted", again)
	}

	q := &ap.CheckRequest{ControlPoint: "quota", Labels: map[string]string{"api_key": "k1", "call_type": "interactive"}}
	for i := 0; i < 2; i++ {
		resp, err := c.Check(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		qi := resp.GetLimiterDecisions()[0].GetQuotaSchedulerInfo()
		if resp.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED || qi.GetLabel() != "k1" || qi.GetWorkloadIndex() != "interactive" || qi.GetPriority() != 200 {
			t.Fatalf("quota flow %d: %v, want accepted with quota_scheduler_info k1/interactive/200", i, resp)
		}
	}
	if resp, _ := c.Check(ctx, q); resp.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_REJECTED || resp.GetRejectReason() != ap.CheckResponse_REJECT_REASON_NO_TOKENS || resp.GetLimiterDecisions()[0].GetDeniedResponseStatusCode() != 503 {
		t.Fatalf("third quota flow: %v, want rejected no_tokens 503 after its 10ms in the queue", resp)
	}
}
