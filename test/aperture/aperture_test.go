package aperture

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/agent"
	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
)

// policy limits each user to 3 flows a minute at control point ingress
// and measures every flow there with flux meter "flows".
const policy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sdk-limit, namespace: default}
spec:
  resources:
    flux_meters:
      flows:
        selectors: [{control_point: ingress}]
        static_buckets: {buckets: [1, 10, 100, 1000]}
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 3}}
              fill_amount: {constant_signal: {value: 3}}
            parameters: {limit_by_label_key: user, interval: 60s}
`

// node returns the node binary and the SDK's directory, failing under
// CI=true when either is missing (make deps installs both).
func node(t *testing.T) (string, string) {
	t.Helper()
	dir, err := filepath.Abs("js")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("node")
	_, serr := os.Stat(filepath.Join(dir, "node_modules", "@fluxninja", "aperture-js", "package.json"))
	if err == nil && serr == nil {
		return bin, dir
	}
	msg := "node and test/aperture/js/node_modules are needed (make deps: apt nodejs npm, npm ci in test/aperture/js)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return "", ""
}

// startAgent runs an agent with the policy on free loopback ports and
// returns the addresses of its gRPC port and its metrics endpoint.
func startAgent(t *testing.T, checkToken, otlpToken string) (grpcAddr, metricsURL string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort, cfg.Server.GRPCPort, cfg.Metrics.Port, cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0, 0, 0, 0
	cfg.Policies.Dir = dir
	cfg.Check.Token, cfg.OTLP.Token = checkToken, otlpToken
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
	return a.Addr(agent.ListenerGRPC).String(), "http://" + a.Addr(agent.ListenerMetrics).String() + cfg.Metrics.Path
}

type sdkResult struct {
	Accepted, Rejected int
	Errors             []string
	ExportErrors       []string
	Decisions          []*struct {
		DecisionType int      `json:"decisionType"`
		RejectReason int      `json:"rejectReason"`
		FluxMeters   []string `json:"fluxMeters"`
	}
}

// runSDK runs js/flows.mjs: flows flows through the SDK with labels.
func runSDK(t *testing.T, addr string, flows int, labels map[string]string, apiKey string) sdkResult {
	t.Helper()
	bin, dir := node(t)
	lb, _ := json.Marshal(labels)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "flows.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AGENT="+addr, "CONTROL_POINT=ingress", fmt.Sprintf("FLOWS=%d", flows), "LABELS="+string(lb), "API_KEY="+apiKey)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node flows.mjs: %v\n%s", err, stderr.String())
	}
	var res sdkResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	var last string
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "{") {
			last = l
		}
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatalf("node flows.mjs printed %q: %v\n%s", out, err, stderr.String())
	}
	return res
}

// meterCount is flux_meter_count of meter "flows" for one decision type,
// read from the agent's /metrics.
func meterCount(t *testing.T, url, decision string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "flux_meter_count{") && strings.Contains(l, `flux_meter_name="flows"`) && strings.Contains(l, `decision_type="`+decision+`"`) {
			f := strings.Fields(l)
			return f[len(f)-1]
		}
	}
	return "0"
}

// TestApertureJSSDK: the unmodified JavaScript SDK, pointed at the agent's
// gRPC port, gets FluxGate's decisions (a per-user limit of 3: exactly 3
// of 5 flows run) and its flow spans, sent to the same address, reach the
// policy's flux meter as 3 accepted and 2 rejected flows.
func TestApertureJSSDK(t *testing.T) {
	node(t)
	grpcAddr, metrics := startAgent(t, "", "")
	res := runSDK(t, grpcAddr, 5, map[string]string{"user": "alice"}, "")
	if len(res.Errors) > 0 || len(res.ExportErrors) > 0 {
		t.Fatalf("the SDK's checks failed: %v; its span exports: %v", res.Errors, res.ExportErrors)
	}
	if res.Accepted != 3 || res.Rejected != 2 {
		t.Fatalf("alice: %d accepted, %d rejected; want 3 and 2 (a limit of 3 a minute)", res.Accepted, res.Rejected)
	}
	last := res.Decisions[4]
	if last == nil || last.DecisionType != 1 || last.RejectReason != 1 {
		t.Fatalf("fifth flow's check response %+v, want decisionType 1 (rejected), rejectReason 1 (rate limited)", last)
	}
	if len(res.Decisions[0].FluxMeters) != 1 || res.Decisions[0].FluxMeters[0] != "default/sdk-limit/flows" {
		t.Fatalf("check response names flux meters %v, want [default/sdk-limit/flows]", res.Decisions[0].FluxMeters)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		acc, rej := meterCount(t, metrics, "DECISION_TYPE_ACCEPTED"), meterCount(t, metrics, "DECISION_TYPE_REJECTED")
		if acc == "3" && rej == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flux meter flows counted %s accepted and %s rejected flows, want 3 and 2 (the SDK's spans)", acc, rej)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := runSDK(t, grpcAddr, 2, map[string]string{"user": "bob"}, ""); r.Accepted != 2 {
		t.Fatalf("bob: %d of 2 accepted, want both (his own limit)", r.Accepted)
	}
}

// TestApertureWithToken: with check.token set, Aperture's API takes the
// token as Aperture's SDKs send their API key (x-api-key metadata) as well
// as a bearer token; the JavaScript SDK without it is refused and fails
// open, as Aperture's SDK documents. (The JavaScript SDK sends its key only
// over TLS: grpc-js cannot add call credentials to an insecure channel.)
func TestApertureWithToken(t *testing.T) {
	node(t)
	grpcAddr, _ := startAgent(t, "s3cret", "s3cret")
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	c := ap.NewFlowControlServiceClient(conn)
	req := &ap.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "dave"}}
	for _, md := range []metadata.MD{metadata.Pairs("x-api-key", "s3cret"), metadata.Pairs("authorization", "Bearer s3cret")} {
		resp, err := c.Check(metadata.NewOutgoingContext(context.Background(), md), req)
		if err != nil || resp.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED {
			t.Fatalf("check with %v: %v, %v; want accepted", md, resp.GetDecisionType(), err)
		}
	}
	if _, err := c.Check(metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-api-key", "wrong")), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("check with a wrong key: %v, want Unauthenticated", err)
	}
	if r, err := c.CacheLookup(metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-api-key", "s3cret")),
		&ap.CacheLookupRequest{GlobalCacheKeys: []string{"k"}}); err != nil || r.GetGlobalCacheResponses()["k"].GetLookupStatus() != ap.CacheLookupStatus_MISS {
		t.Fatalf("cache lookup with the key: %v (%v), want a miss", r, err)
	}
	if _, err := c.CacheLookup(context.Background(), &ap.CacheLookupRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("cache lookup without the key: %v, want Unauthenticated", err)
	}

	res := runSDK(t, grpcAddr, 2, map[string]string{"user": "carol"}, "")
	if res.Accepted != 2 || len(res.Errors) != 2 || !strings.Contains(strings.ToLower(res.Errors[0]), "unauthenticated") {
		t.Fatalf("the SDK without its key: %d accepted, errors %v; want both run (fail open) after an unauthenticated error", res.Accepted, res.Errors)
	}
	if len(res.ExportErrors) == 0 || !strings.Contains(res.ExportErrors[0], "otlp.token") {
		t.Fatalf("the SDK's spans without its key: export errors %v, want them refused naming otlp.token", res.ExportErrors)
	}
}

// TestApertureCheckHTTPOnAgent: Aperture's HTTP check on a real agent's
// gRPC port, behind its check token as Check is: the user label comes
// from the request's baggage header, the policy's limit of 3 a minute
// holds, and the fourth request is denied with 429 and retry-after.
func TestApertureCheckHTTPOnAgent(t *testing.T) {
	grpcAddr, _ := startAgent(t, "s3cret", "s3cret")
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	c := ap.NewFlowControlServiceHTTPClient(conn)
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-api-key", "s3cret"))
	req := &ap.CheckHTTPRequest{ControlPoint: "ingress", Source: &ap.SocketAddress{Address: "127.0.0.1"},
		Request: &ap.CheckHTTPRequest_HttpRequest{Method: "POST", Path: "/orders", Host: "shop", Scheme: "http",
			Headers: map[string]string{"baggage": "user=erin"}}}
	for i := 0; i < 3; i++ {
		r, err := c.CheckHTTP(ctx, req)
		if err != nil || r.GetStatus().GetCode() != int32(codes.OK) || r.GetOkResponse() == nil {
			t.Fatalf("request %d: %v (%v), want OK", i, r, err)
		}
	}
	r, err := c.CheckHTTP(ctx, req)
	if err != nil || r.GetStatus().GetCode() != int32(codes.Unavailable) || r.GetDeniedResponse().GetStatus() != 429 ||
		r.GetDeniedResponse().GetHeaders()["retry-after"] == "" || r.GetCheckResponse().GetTelemetryFlowLabels()["user"] != "erin" {
		t.Fatalf("fourth request: %v (%v), want UNAVAILABLE, 429 with retry-after, user erin", r, err)
	}
	if _, err := c.CheckHTTP(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without the key: %v, want Unauthenticated", err)
	}
}
