package fluxmeter

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fluxgate/fluxgate/metricnames"
)

func newReceiver(t *testing.T) (*Receiver, *Processor) {
	t.Helper()
	p := New(Options{})
	p.SetPolicies(parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [10, 100]}")))
	r, err := NewReceiver(p, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return r, p
}

func exportRequest() *collectortrace.ExportTraceServiceRequest {
	return &collectortrace.ExportTraceServiceRequest{ResourceSpans: batch(
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "lat"), num(AttrWorkloadMillis, 42), integer(AttrHTTPStatus, 200)),
		span(str("no.control.point", "x")),
	)}
}

func post(t *testing.T, h http.Handler, ct, enc string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestHTTPProtobufJSONAndGzip(t *testing.T) {
	r, p := newReceiver(t)
	pbBody, _ := proto.Marshal(exportRequest())
	jsonBody, _ := protojson.Marshal(exportRequest())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(pbBody)
	_ = zw.Close()

	for _, tc := range []struct {
		name, ct, enc string
		body          []byte
	}{
		{"protobuf", "application/x-protobuf", "", pbBody},
		{"json", "application/json", "", jsonBody},
		{"gzip protobuf", "application/x-protobuf", "gzip", gz.Bytes()},
	} {
		w := post(t, r, tc.ct, tc.enc, tc.body)
		if w.Code != 200 || w.Header().Get("Content-Type") != tc.ct {
			t.Fatalf("%s: %d %s", tc.name, w.Code, w.Body)
		}
		var resp collectortrace.ExportTraceServiceResponse
		if tc.ct == "application/json" {
			if err := protojson.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
		} else if err := proto.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if ps := resp.GetPartialSuccess(); ps.GetRejectedSpans() != 1 || !strings.Contains(ps.GetErrorMessage(), AttrControlPoint) {
			t.Fatalf("%s: partial success = %v", tc.name, ps)
		}
	}
	if got := scrape(t, p, "flux_meter"); !strings.Contains(got, "count=3 sum=126") {
		t.Fatalf("three exports of one good span each: %s", got)
	}
}

func TestHTTPMalformed(t *testing.T) {
	r, p := newReceiver(t)
	for _, tc := range []struct {
		name, ct, enc string
		body          string
		code          int
		msg           string // in the google.rpc.Status answer
	}{
		{"garbage protobuf", "application/x-protobuf", "", "\xff\xff\xff", 400, "malformed OTLP trace request"},
		{"garbage json", "application/json", "", "{not json", 400, "malformed OTLP trace request"},
		{"bad gzip", "application/x-protobuf", "gzip", "not gzip", 400, "bad gzip body"},
		{"unknown encoding", "application/x-protobuf", "br", "x", 400, "unsupported Content-Encoding"},
		{"wrong content type", "text/plain", "", "x", 415, "unsupported Content-Type"},
	} {
		w := post(t, r, tc.ct, tc.enc, []byte(tc.body))
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.msg) {
			t.Errorf("%s: %d %q", tc.name, w.Code, w.Body)
		}
	}
	if got := testutil.ToFloat64(r.malformed.WithLabelValues("http")); got != 5 {
		t.Errorf("malformed counter = %v", got)
	}
	// The receiver still works.
	body, _ := proto.Marshal(exportRequest())
	if w := post(t, r, "application/x-protobuf", "", body); w.Code != 200 {
		t.Fatalf("after malformed requests: %d", w.Code)
	}
	if got := scrape(t, p, "flux_meter"); !strings.Contains(got, "count=1") {
		t.Fatalf("%s", got)
	}
}

func serveGRPC(t *testing.T, r *Receiver) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(r.GRPCServerOptions()...)
	r.RegisterGRPC(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestGRPCExportAndMalformed(t *testing.T) {
	r, p := newReceiver(t)
	addr := serveGRPC(t, r)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := collectortrace.NewTraceServiceClient(conn).Export(ctx, exportRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPartialSuccess().GetRejectedSpans() != 1 {
		t.Fatalf("partial success = %v", resp.GetPartialSuccess())
	}
	// A malformed payload fails to decode in gRPC itself and the server
	// keeps serving.
	err = conn.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", []byte("\xff\xff\xff"), new([]byte), grpc.ForceCodec(rawCodec{}))
	if err == nil {
		t.Fatal("malformed gRPC export accepted")
	}
	if _, err := collectortrace.NewTraceServiceClient(conn).Export(ctx, exportRequest()); err != nil {
		t.Fatalf("after a malformed export: %v", err)
	}
	if got := scrape(t, p, "flux_meter"); !strings.Contains(got, "count=2") {
		t.Fatalf("%s", got)
	}
}

// rawCodec sends arbitrary bytes as a gRPC message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestOpenTelemetrySDKExports uses the real OpenTelemetry Go SDK and its
// OTLP exporters, over gRPC and HTTP, as a user's service would.
func TestOpenTelemetrySDKExports(t *testing.T) {
	r, p := newReceiver(t)
	grpcAddr := serveGRPC(t, r)
	httpSrv := httptest.NewServer(r)
	defer httpSrv.Close()
	ctx := context.Background()

	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(strings.TrimPrefix(httpSrv.URL, "http://")), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	for _, exp := range []sdktrace.SpanExporter{grpcExp, httpExp} {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		tr := tp.Tracer("checkout")
		for _, ms := range []float64{5, 50} {
			_, sp := tr.Start(ctx, "GET /checkout")
			sp.SetAttributes(
				attribute.String(AttrControlPoint, "ingress"),
				attribute.StringSlice(AttrFluxMeters, []string{"default/shop/lat"}),
				attribute.String(AttrDecisionType, metricnames.DecisionAccepted),
				attribute.Int(AttrHTTPStatus, 200),
				attribute.Float64(AttrWorkloadMillis, ms),
			)
			sp.End()
		}
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := "flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,http_status_code=200,policy_name=shop} count=4 sum=110 le10=2 le100=4\n"
	if got := scrape(t, p, "flux_meter"); got != want {
		t.Fatalf("got\n%swant\n%s", got, want)
	}
}

// BenchmarkHTTPIngest measures OTLP/HTTP ingest end to end in the agent's
// process: protobuf decoding plus processing, 512 spans per request.
func BenchmarkHTTPIngest(b *testing.B) {
	p := New(Options{})
	p.SetPolicies(parsePolicies(b, policyWithMeter("shop", "lat", "")))
	r, err := NewReceiver(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	spans := make([]*tracepb.Span, 512)
	for i := range spans {
		spans[i] = span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "default/shop/lat"),
			str(AttrDecisionType, metricnames.DecisionAccepted), integer(AttrHTTPStatus, 200), num(AttrWorkloadMillis, float64(i%700)))
	}
	body, _ := proto.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: batch(spans...)})
	req := httptest.NewRequest(http.MethodPost, "/v1/traces", nil)
	req.Header.Set("Content-Type", "application/x-protobuf")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.Body = io.NopCloser(bytes.NewReader(body))
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
	b.ReportMetric(float64(b.N)*512/b.Elapsed().Seconds(), "spans/s")
}

func FuzzReceiverHTTP(f *testing.F) {
	pbBody, _ := proto.Marshal(exportRequest())
	jsonBody, _ := protojson.Marshal(exportRequest())
	f.Add(pbBody, false)
	f.Add(jsonBody, true)
	f.Add([]byte("{}"), true)
	p := New(Options{})
	p.SetPolicies(parsePolicies(f, policyWithMeter("shop", "lat", "")))
	r, err := NewReceiver(p, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		w := post(t, r, ct, "", body)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}

// A body over MaxRequestBytes, announced, streamed without a length, or
// inflated from gzip, is refused with 413 (issue 14).
func TestHTTPOversizeBodyIs413(t *testing.T) {
	r, _ := newReceiver(t)
	big := bytes.Repeat([]byte{0}, MaxRequestBytes+1)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(big)
	_ = zw.Close()

	announced := httptest.NewRequest(http.MethodPost, "/v1/traces", strings.NewReader("x"))
	announced.ContentLength = 64 << 20
	announced.Header.Set("Content-Type", "application/x-protobuf")
	streamed := httptest.NewRequest(http.MethodPost, "/v1/traces", io.MultiReader(bytes.NewReader(big)))
	streamed.ContentLength = -1
	streamed.Header.Set("Content-Type", "application/x-protobuf")
	inflated := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(zipped.Bytes()))
	inflated.Header.Set("Content-Type", "application/x-protobuf")
	inflated.Header.Set("Content-Encoding", "gzip")
	for name, req := range map[string]*http.Request{"announced": announced, "streamed": streamed, "gzip": inflated} {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: status %d, want 413 (%s)", name, w.Code, w.Body.String())
		}
	}
}

// Bodies in flight share one memory budget (issue 14: 40 clients that
// sent most of a 16 MiB body and stalled took 390 MiB): with four
// bodies of the largest size being read, a fifth request is answered 503
// with Retry-After instead of being buffered, and once they end the
// budget is whole again.
func TestHTTPBodiesInFlightShareABudget(t *testing.T) {
	r, _ := newReceiver(t)
	release := make(chan struct{})
	var handlers, writers sync.WaitGroup
	for range MaxInFlightBytes / (MaxRequestBytes + 1) {
		pr, pw := io.Pipe()
		req := httptest.NewRequest(http.MethodPost, "/v1/traces", pr)
		req.ContentLength = MaxRequestBytes
		req.Header.Set("Content-Type", "application/x-protobuf")
		handlers.Go(func() { r.ServeHTTP(httptest.NewRecorder(), req) })
		writers.Go(func() {
			_, _ = pw.Write(make([]byte, MaxRequestBytes-1)) // returns once the handler has read it all
			<-release
			_ = pw.CloseWithError(io.ErrUnexpectedEOF)
		})
	}
	sent := make(chan struct{})
	go func() {
		// Writers return from Write only when the bodies are buffered.
		for {
			r.inflight.mu.Lock()
			used := r.inflight.used
			r.inflight.mu.Unlock()
			if used >= 4*MaxRequestBytes {
				close(sent)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("the four stalled bodies were not buffered within 30s")
	}
	body, _ := proto.Marshal(exportRequest())
	w := post(t, r, "application/x-protobuf", "", body)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("with the budget spent: status %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	close(release)
	writers.Wait()
	handlers.Wait()
	if r.inflight.used != 0 {
		t.Errorf("%d bytes of the budget still held after every request ended", r.inflight.used)
	}
	if w := post(t, r, "application/x-protobuf", "", body); w.Code != http.StatusOK {
		t.Errorf("after the stalled bodies ended: status %d, want 200", w.Code)
	}
}
