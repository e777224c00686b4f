package otlpspans

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	fgagent "github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/controlpoint/client"
)

const meteredLimit = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: metered}
spec:
  resources:
    flux_meters:
      latency:
        selectors: [{control_point: ingress}]
        static_buckets: {buckets: [1, 1000]}
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 3}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
`

// TestMiddlewareSpansFeedFluxMeters runs the whole loop: middleware checks
// with a remote agent, records a span per request, and the agent's flux
// meter counts accepted and rejected flows apart.
// With check.token and otlp.token set on the agent, the clients' Token
// options make the same loop work, and with mutual TLS on the agent
// (tls.client_ca_file) their TLS options.
func TestMiddlewareSpansFeedFluxMeters(t *testing.T) {
	for _, tc := range []struct {
		name, checkToken, otlpToken string
		mtls                        bool
	}{
		{"open agent", "", "", false},
		{"tokens", "check-s3cret", "otlp-s3cret", false},
		{"mutual TLS", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) { testSpansFeedFluxMeters(t, tc.checkToken, tc.otlpToken, tc.mtls) })
	}
}

func testSpansFeedFluxMeters(t *testing.T, checkToken, otlpToken string, mtls bool) {
	cfg := agenttest.Config(t, meteredLimit)
	cfg.Metrics.Enabled = false
	cfg.Check.Token, cfg.OTLP.Token = checkToken, otlpToken
	var clientTLS *tls.Config
	if mtls {
		dir := t.TempDir()
		ca := certstest.NewCA(t, "agent-ca")
		cfg.TLS.CertFile, cfg.TLS.KeyFile = ca.Server(t, "agent.test").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		cfg.TLS.ClientCAFile = ca.WriteCert(t, filepath.Join(dir, "ca.crt"))
		clientTLS = certstest.ClientConfig(ca, ca.Client(t, "app"))
	}
	a := agenttest.Start(t, cfg)
	ctx := context.Background()

	remote, err := client.NewRemote(a.Addr(fgagent.ListenerGRPC).String(), client.RemoteOptions{Token: checkToken, TLS: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	reg := prometheus.NewRegistry()
	spans, err := New(ctx, Options{Endpoint: a.Addr(fgagent.ListenerOTLPGRPC).String(), Token: otlpToken, TLS: clientTLS, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	guard, err := client.NewGuard(remote, client.GuardOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := client.Middleware(guard, client.MiddlewareOptions{Tracer: spans.Tracer()})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(5 * time.Millisecond)
		w.WriteHeader(http.StatusCreated)
	}))
	codes := map[int]int{}
	for i := 0; i < 5; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/orders", nil))
		codes[w.Code]++
	}
	if codes[201] != 3 || codes[429] != 2 {
		t.Fatalf("statuses = %v, want 3×201 and 2×429", codes)
	}
	if err := spans.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(spans.exported); got != 5 {
		t.Fatalf("exported %v spans, want 5", got)
	}

	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "flux_meter" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "decision_type" || l.GetName() == "http_status_code" {
					key = append(key, l.GetValue())
				}
			}
			counts[strings.Join(key, " ")] = m.GetHistogram().GetSampleCount()
			if strings.Contains(strings.Join(key, " "), "ACCEPTED") {
				// 5 ms handlers: none under 1 ms, all under 1000 ms.
				if b := m.GetHistogram().GetBucket(); b[0].GetCumulativeCount() != 0 || b[1].GetCumulativeCount() != 3 {
					t.Errorf("accepted buckets = %v", b)
				}
			}
		}
	}
	want := map[string]uint64{"DECISION_TYPE_ACCEPTED 201": 3, "DECISION_TYPE_REJECTED 429": 2}
	if len(counts) != len(want) || counts["DECISION_TYPE_ACCEPTED 201"] != 3 || counts["DECISION_TYPE_REJECTED 429"] != 2 {
		t.Fatalf("flux_meter series = %v, want %v", counts, want)
	}
}

// An agent with an OTLP token refuses an Emitter without it (or with the
// check API's token): its spans are dropped, none exported.
func TestTokenRefusedWithout(t *testing.T) {
	cfg := agenttest.Config(t, meteredLimit)
	cfg.Metrics.Enabled = false
	cfg.Check.Token, cfg.OTLP.Token = "check-s3cret", "otlp-s3cret"
	a := agenttest.Start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, token := range []string{"", "check-s3cret"} {
		spans, err := New(ctx, Options{Endpoint: a.Addr(fgagent.ListenerOTLPGRPC).String(), Token: token, ExportTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, span := spans.Tracer().Start(ctx, "flow")
		span.End()
		_ = spans.Close(ctx)
		if got := testutil.ToFloat64(spans.exported); got != 0 {
			t.Errorf("export with token %q: %v spans exported, want 0", token, got)
		}
		if got := testutil.ToFloat64(spans.dropped); got != 1 {
			t.Errorf("export with token %q: %v spans dropped, want 1", token, got)
		}
	}
}

func TestSpanQueueDropsWhenFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Nothing listens on this port: exports fail and spans are dropped,
	// never blocking the request path.
	spans, err := New(context.Background(), Options{Endpoint: "127.0.0.1:1", QueueSize: 2, FlushInterval: time.Hour, ExportTimeout: 100 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tr := spans.Tracer()
	// Ending a span only queues it (or drops it when the queue is full);
	// the exports fail at Close, and every span is counted as dropped.
	for i := 0; i < 10; i++ {
		_, sp := tr.Start(context.Background(), "x")
		sp.End()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = spans.Close(ctx)
	if got := testutil.ToFloat64(spans.dropped); got != 10 {
		t.Fatalf("dropped = %v, want 10 (over the queue or failed to export)", got)
	}
}
