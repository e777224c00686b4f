package fluxmeter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/fluxgate/fluxgate/metricnames"
)

// twoProcessors returns processors for the message path and the wire path,
// with the same meters and the engine-free name resolution.
func twoProcessors(t testing.TB) (*Processor, *Processor) {
	ps := parsePolicies(t,
		policyWithMeter("shop", "lat", "static_buckets: {buckets: [10, 100]}"),
		policyWithMeter("other", "dur", "static_buckets: {buckets: [1]}"))
	a, b := New(Options{}), New(Options{})
	a.SetPolicies(ps)
	b.SetPolicies(ps)
	return a, b
}

// randomRequest builds spans that exercise every attribute kind the
// decoder reads or skips.
func randomRequest(r *rand.Rand, n int) *collectortrace.ExportTraceServiceRequest {
	var spans []*tracepb.Span
	for i := 0; i < n; i++ {
		var attrs []*commonpb.KeyValue
		if r.IntN(10) > 0 {
			attrs = append(attrs, str(AttrControlPoint, "ingress"))
		}
		switch r.IntN(4) {
		case 0:
			attrs = append(attrs, strs(AttrFluxMeters, "lat"))
		case 1:
			attrs = append(attrs, strs(AttrFluxMeters, "default/shop/lat", "dur", "nope"))
		case 2:
			attrs = append(attrs, str(AttrFluxMeters, "lat")) // not an array: ignored
		}
		if r.IntN(2) == 0 {
			attrs = append(attrs, str(AttrDecisionType, []string{metricnames.DecisionAccepted, metricnames.DecisionRejected}[r.IntN(2)]))
		}
		switch r.IntN(4) {
		case 0:
			attrs = append(attrs, integer(AttrHTTPStatus, int64(100+r.IntN(500))))
		case 1:
			attrs = append(attrs, integer(AttrHTTPStatusOld, int64(r.IntN(700))))
		}
		switch r.IntN(4) {
		case 0:
			attrs = append(attrs, num(AttrWorkloadMillis, r.Float64()*200))
		case 1:
			attrs = append(attrs, integer(AttrWorkloadMillis, int64(r.IntN(200))))
		case 2:
			attrs = append(attrs, str(AttrWorkloadMillis, "fast"))
		}
		attrs = append(attrs, &commonpb.KeyValue{Key: "flag", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}})
		sp := &tracepb.Span{Name: fmt.Sprint("s", i), TraceId: make([]byte, 16), SpanId: make([]byte, 8), Attributes: attrs,
			StartTimeUnixNano: 1_000_000_000, EndTimeUnixNano: 1_000_000_000 + uint64(r.IntN(50_000_000)),
			Events: []*tracepb.Span_Event{{Name: "e", Attributes: []*commonpb.KeyValue{str(AttrControlPoint, "not-this")}}}}
		if r.IntN(5) == 0 {
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"}
		}
		spans = append(spans, sp)
	}
	return &collectortrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans[:n/2]}, {Spans: spans[n/2:]}}}}}
}

// TestWireDecoderMatchesMessages feeds the same requests through both
// paths and expects identical metrics and partial-success answers.
func TestWireDecoderMatchesMessages(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	msgs, wire := twoProcessors(t)
	for i := 0; i < 50; i++ {
		req := randomRequest(r, 40)
		body, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		rejA, _ := msgs.Consume(req.GetResourceSpans())
		rejB, _, err := wire.ConsumeProto(body)
		if err != nil {
			t.Fatal(err)
		}
		if rejA != rejB {
			t.Fatalf("request %d: rejected %d by messages, %d by the wire decoder", i, rejA, rejB)
		}
	}
	a, b := scrape(t, msgs), scrape(t, wire)
	if a != b || a == "" {
		t.Fatalf("metrics differ:\nmessages:\n%s\nwire:\n%s", a, b)
	}
}

func TestWireDecoderRefusesMalformed(t *testing.T) {
	_, wire := twoProcessors(t)
	body, _ := proto.Marshal(randomRequest(rand.New(rand.NewPCG(3, 4)), 10))
	for _, bad := range [][]byte{{0xff, 0xff, 0xff}, body[:len(body)-3], append([]byte{0x0a, 0x05}, 0x12, 0x10)} {
		if _, _, err := wire.ConsumeProto(bad); err == nil {
			t.Errorf("malformed body %x accepted", bad)
		}
	}
	if got := scrape(t, wire, "flux_meter"); got != "" {
		t.Fatalf("a malformed request counted spans: %s", got)
	}
}

func FuzzConsumeProto(f *testing.F) {
	body, _ := proto.Marshal(randomRequest(rand.New(rand.NewPCG(5, 6)), 6))
	f.Add(body)
	f.Add([]byte{})
	msgs, wire := twoProcessors(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req collectortrace.ExportTraceServiceRequest
		_, _, werr := wire.ConsumeProto(b)
		if proto.Unmarshal(b, &req) == nil && werr != nil {
			t.Fatalf("the wire decoder refused a request protobuf accepts: %v", werr)
		}
		msgs.Consume(req.GetResourceSpans())
	})
}

// BenchmarkGRPCIngest measures the gRPC path on the server side: the
// codec keeping the request in wire format, then the wire decoder, 512
// spans per request.
func BenchmarkGRPCIngest(b *testing.B) {
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
	codec := wireCodec{proto: encoding.GetCodecV2("proto")}
	b.ReportAllocs()
	for b.Loop() {
		in := &rawExport{}
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(body)}, in); err != nil {
			b.Fatal(err)
		}
		if _, err := r.exportRaw(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*512/b.Elapsed().Seconds(), "spans/s")
}
