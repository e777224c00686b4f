package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fluxgate/fluxgate/internal/freeport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// policyYAML is a minimal valid policy document named name.
func policyYAML(namespace, name, interval string) string {
	return fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata:
  name: %s
  namespace: %s
spec:
  circuit:
    evaluation_interval: %s
    components: []
`, name, namespace, interval)
}

// testAdminToken is the admin token of testConfig.
const testAdminToken = "test-admin-token"

// testConfig is a config bound to free loopback ports with policies in dir
// and testAdminToken as admin.token.
func testConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort = 0
	cfg.Server.GRPCPort = 0
	cfg.Metrics.Port = 0
	cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0
	cfg.Policies.Dir = dir
	cfg.Admin.Token = testAdminToken
	return cfg
}

// startAgent starts an agent and stops it at the end of the test.
func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

func (a *Agent) testURL(path string) string {
	return "http://" + a.Addr(ListenerHTTP).String() + path
}

type response struct {
	code   int
	header http.Header
	body   string
}

func doRequest(t *testing.T, method, url, body string, header map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// adminRequest is doRequest with testAdminToken as a bearer token, for the
// operator endpoints.
func adminRequest(t *testing.T, method, url, body string, header map[string]string) response {
	t.Helper()
	h := map[string]string{"Authorization": "Bearer " + testAdminToken}
	for k, v := range header {
		h[k] = v
	}
	return doRequest(t, method, url, body, h)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// server.probe_port serves the probes, plain HTTP, and nothing else.
func TestProbePort(t *testing.T) {
	cfg := testConfig(t.TempDir())
	// Below the ephemeral range: a port the kernel handed out and took
	// back may be another test's client port by the time the agent binds
	// it ("address already in use", seen in CI).
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.ProbePort = port
	a := startAgent(t, cfg)
	base := "http://" + a.Addr(ListenerProbe).String()
	for _, p := range []string{"/livez", "/readyz", "/v1/monitoring/health"} {
		if r := doRequest(t, "GET", base+p, "", nil); r.code != 200 {
			t.Errorf("probe port %s = %d %s, want 200", p, r.code, r.body)
		}
	}
	for _, p := range []string{"/v1/policies", "/v1/monitoring/metrics", "/ui/"} {
		if r := doRequest(t, "GET", base+p, "", nil); r.code != 404 {
			t.Errorf("probe port %s = %d, want 404 (probes only)", p, r.code)
		}
	}
	if r := doRequest(t, "POST", base+"/v1/check", `{"control_point":"x"}`, nil); r.code != 404 {
		t.Errorf("probe port POST /v1/check = %d, want 404 (probes only)", r.code)
	}
	if a.Addr(ListenerProbe) == nil || startAgent(t, testConfig(t.TempDir())).Addr(ListenerProbe) != nil {
		t.Error("a probe listener without server.probe_port")
	}
}

func TestHealthReadyAndSystemStats(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "demo.yaml"), policyYAML("default", "demo", "1s"))
	a := startAgent(t, testConfig(dir))

	r := doRequest(t, "GET", a.testURL("/v1/monitoring/health"), "", nil)
	if r.code != 200 {
		t.Fatalf("health = %d %s", r.code, r.body)
	}
	var rep HealthReport
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != StatusHealthy || rep.Components["policy_store"].Status != StatusHealthy || rep.Components["grpc"].Status != StatusHealthy {
		t.Fatalf("health report = %+v", rep)
	}
	for _, p := range []string{"/livez", "/readyz"} {
		if r := doRequest(t, "GET", a.testURL(p), "", nil); r.code != 200 {
			t.Errorf("%s = %d", p, r.code)
		}
	}

	r = doRequest(t, "GET", a.testURL("/v1/monitoring/metrics"), "", nil)
	var stats map[string]any
	if err := json.Unmarshal([]byte(r.body), &stats); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"uptime_seconds", "go_version", "num_goroutines", "memory_alloc_mb", "memory_sys_mb", "num_gc", "gc_pause_ms", "policies_loaded"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("system stats lack %q: %s", k, r.body)
		}
	}
	if stats["policies_loaded"] != 1.0 {
		t.Errorf("policies_loaded = %v, want 1", stats["policies_loaded"])
	}

	// A required component going unhealthy turns health into 503; an
	// optional one only degrades it.
	a.Health().Register("optional", false, func() ComponentHealth { return ComponentHealth{Status: StatusUnhealthy} })
	r = doRequest(t, "GET", a.testURL("/v1/monitoring/health"), "", nil)
	if r.code != 200 || !strings.Contains(r.body, `"status": "degraded"`) {
		t.Fatalf("health with an unhealthy optional component = %d %s", r.code, r.body)
	}
	a.Health().Register("redis", true, func() ComponentHealth {
		return ComponentHealth{Status: StatusUnhealthy, Message: "connection refused"}
	})
	r = doRequest(t, "GET", a.testURL("/v1/monitoring/health"), "", nil)
	if r.code != 503 || !strings.Contains(r.body, "connection refused") {
		t.Fatalf("health with an unhealthy required component = %d %s", r.code, r.body)
	}
}

func TestGRPCHealth(t *testing.T) {
	a := startAgent(t, testConfig(t.TempDir()))
	conn, err := grpc.NewClient(a.Addr(ListenerGRPC).String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health = %v", resp.Status)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	a := startAgent(t, testConfig(t.TempDir()))
	url := "http://" + a.Addr(ListenerMetrics).String() + "/metrics"

	text := doRequest(t, "GET", url, "", nil)
	if ct := text.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("default Content-Type = %q, want Prometheus text", ct)
	}
	for _, m := range []string{"fluxgate_build_info{", "fluxgate_system_uptime_seconds ", "go_goroutines ", "process_start_time_seconds ", "fluxgate_policy_reload_errors_total 0", "fluxgate_policies_loaded 0"} {
		if !strings.Contains(text.body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	if strings.Contains(text.body, "# EOF") {
		t.Error("Prometheus text output must not end with the OpenMetrics # EOF marker")
	}

	om := doRequest(t, "GET", url, "", map[string]string{"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"})
	if ct := om.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics Content-Type = %q", ct)
	}
	if !strings.HasSuffix(om.body, "# EOF\n") {
		t.Errorf("OpenMetrics body does not end with # EOF")
	}
	if !strings.Contains(om.body, "fluxgate_build_info{") {
		t.Errorf("OpenMetrics body lacks fluxgate_build_info")
	}
}

func TestMetricsPathAndDisabled(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Metrics.Path = "/custom"
	a := startAgent(t, cfg)
	base := "http://" + a.Addr(ListenerMetrics).String()
	if r := doRequest(t, "GET", base+"/custom", "", nil); r.code != 200 || !strings.Contains(r.body, "fluxgate_build_info") {
		t.Errorf("/custom = %d", r.code)
	}
	if r := doRequest(t, "GET", base+"/metrics", "", nil); r.code != 404 {
		t.Errorf("/metrics with path /custom = %d, want 404", r.code)
	}

	cfg = testConfig(t.TempDir())
	cfg.Metrics.Enabled = false
	off := startAgent(t, cfg)
	if addr := off.Addr(ListenerMetrics); addr != nil {
		t.Fatalf("metrics disabled but listening on %v", addr)
	}
	if off.Addr(ListenerHTTP) == nil {
		t.Fatal("HTTP listener missing")
	}
}

func TestGracefulShutdownFinishesInFlightRequest(t *testing.T) {
	a, err := New(Options{Config: testConfig(t.TempDir()), ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	a.HandleHTTP("GET /slow", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()

	var addr string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if a.Addr(ListenerHTTP) != nil && a.Ready() {
			addr = a.Addr(ListenerHTTP).String()
			break
		}
	}
	if addr == "" {
		t.Fatal("agent did not start")
	}
	got := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/slow", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken) // HandleHTTP mounts operator endpoints
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- response{code: -1, body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		got <- response{code: resp.StatusCode, body: string(b)}
	}()
	<-entered
	cancel() // what SIGTERM does in the binary
	// Shutdown must wait for the request: readiness drops first.
	for deadline := time.Now().Add(5 * time.Second); a.Ready() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if a.Ready() {
		t.Fatal("agent still ready after shutdown began")
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run returned %v before the in-flight request finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request = %d %q", r.code, r.body)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run = %v, want nil after a graceful shutdown", err)
	}
	if _, err := http.Get("http://" + addr + "/livez"); err == nil {
		t.Fatal("HTTP still served after Run returned")
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	a := startAgent(t, testConfig(t.TempDir()))
	cfg := testConfig(t.TempDir())
	_, port, _ := strings.Cut(a.Addr(ListenerHTTP).String(), ":")
	if _, err := fmt.Sscan(port, &cfg.Server.HTTPPort); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(context.Background())
	if err == nil {
		_ = b.Stop(context.Background())
		t.Fatal("Start succeeded on a busy port")
	}
	if !strings.Contains(err.Error(), "http listener (server.http_port)") {
		t.Errorf("error = %v, want it to name the http listener and its key", err)
	}
}

// Every part the agent runs goes through one mechanism: the first error
// ends Run, and no error is dropped — Run returns them all.
func TestRunReturnsEveryPartError(t *testing.T) {
	a, err := New(Options{Config: testConfig(t.TempDir()), ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- a.Run(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for !a.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("agent not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	release := make(chan struct{})
	a.goRun("first part", func(context.Context) error { <-release; return errors.New("one") })
	a.goRun("second part", func(context.Context) error { <-release; return errors.New("two") })
	close(release)
	select {
	case err := <-ran:
		if err == nil || !strings.Contains(err.Error(), "agent: first part: one") || !strings.Contains(err.Error(), "agent: second part: two") {
			t.Fatalf("Run = %v, want both parts' errors", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its parts failed")
	}
}
