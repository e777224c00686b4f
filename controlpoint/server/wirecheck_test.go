package server

import (
	"context"
	"maps"
	"math"
	"runtime"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// agreeWithProto decodes b with wireCheck and with the protobuf decoder
// followed by RequestFromProto, and fails unless both give the same
// request, or both an error.
func agreeWithProto(t *testing.T, b []byte) {
	t.Helper()
	var w wireCheck
	// Split the message in two buffers when it is long enough, as gRPC
	// may hand it over.
	data := mem.BufferSlice{mem.SliceBuffer(b)}
	if len(b) > 3 {
		data = mem.BufferSlice{mem.SliceBuffer(b[:3]), mem.SliceBuffer(b[3:])}
	}
	werr := w.UnmarshalGRPC(data)
	var got controlpoint.Request
	if werr == nil {
		got, werr = w.request()
	}
	var in pb.CheckRequest
	perr := proto.Unmarshal(b, &in)
	var want controlpoint.Request
	if perr == nil {
		want, perr = controlpoint.RequestFromProto(&in)
	}
	if (werr == nil) != (perr == nil) {
		t.Fatalf("message %x: wire decoder error %v, protobuf decoder error %v", b, werr, perr)
	}
	if werr != nil {
		return
	}
	same := got.ControlPoint == want.ControlPoint && maps.Equal(got.Labels, want.Labels) &&
		(got.Tokens == want.Tokens || math.IsNaN(got.Tokens) && math.IsNaN(want.Tokens))
	if !same {
		t.Fatalf("message %x: wire decoder %+v, protobuf decoder %+v", b, got, want)
	}
}

func wireField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func wireEntry(key, val string) []byte {
	return wireField(wireField(nil, 1, []byte(key)), 2, []byte(val))
}

// TestWireCheckAgreesWithProtobuf: the hand decoder of CheckRequest
// reads every shape the protobuf decoder reads, the same way, and refuses
// what it refuses.
func TestWireCheckAgreesWithProtobuf(t *testing.T) {
	full, err := proto.Marshal(&pb.CheckRequest{ControlPoint: "ingress", Tokens: 2.5, Labels: map[string]string{
		"user": "alice", "tier": "free", "http.method": "GET", "empty": "", "": "no key", "ünï": "cödé",
	}})
	if err != nil {
		t.Fatal(err)
	}
	tokens := func(b []byte, f float64) []byte {
		b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(f))
	}
	cp := wireField(nil, 1, []byte("ingress"))
	cases := map[string][]byte{
		"marshalled":                full,
		"empty":                     {},
		"control point only":        cp,
		"last control point wins":   wireField(cp, 1, []byte("egress")),
		"last label value wins":     append(wireField(cp, 2, wireEntry("k", "a")), wireField(nil, 2, wireEntry("k", "b"))...),
		"entry without value":       wireField(cp, 2, wireField(nil, 1, []byte("k"))),
		"entry without key":         wireField(cp, 2, wireField(nil, 2, []byte("v"))),
		"empty entry":               wireField(cp, 2, nil),
		"entry, key twice":          wireField(cp, 2, append(wireEntry("a", "v"), wireField(nil, 1, []byte("b"))...)),
		"entry with unknown field":  wireField(cp, 2, protowire.AppendVarint(protowire.AppendTag(wireEntry("k", "v"), 7, protowire.VarintType), 9)),
		"unknown varint field":      protowire.AppendVarint(protowire.AppendTag(cp, 9, protowire.VarintType), 300),
		"unknown group":             protowire.AppendTag(protowire.AppendTag(cp, 10, protowire.StartGroupType), 10, protowire.EndGroupType),
		"tokens":                    tokens(cp, 3),
		"negative tokens":           tokens(cp, -1),
		"NaN tokens":                tokens(cp, math.NaN()),
		"infinite tokens":           tokens(cp, math.Inf(1)),
		"last tokens win":           tokens(tokens(cp, math.NaN()), 1),
		"tokens as varint":          protowire.AppendVarint(protowire.AppendTag(cp, 3, protowire.VarintType), 5),
		"control point as varint":   protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5),
		"labels as fixed64":         protowire.AppendFixed64(protowire.AppendTag(cp, 2, protowire.Fixed64Type), 5),
		"bad UTF-8 control point":   wireField(nil, 1, []byte{0xff}),
		"bad UTF-8 key":             wireField(cp, 2, wireEntry("\xff", "v")),
		"bad UTF-8 value":           wireField(cp, 2, wireEntry("k", "\xc0")),
		"truncated length":          append(protowire.AppendTag(cp, 2, protowire.BytesType), 10, 1),
		"truncated tag":             append(cp, 0x80),
		"field number 0":            append(cp, 0x02, 0x00),
		"field number over 2²⁹-1":   append(cp, 0xb2, 0xb2, 0xb2, 0xb2, 0x30, 0x00),
		"truncated entry":           wireField(cp, 2, []byte{0x0a, 0x05, 'a'}),
		"end group alone":           protowire.AppendTag(cp, 4, protowire.EndGroupType),
		"too many labels":           tooManyLabels(cp),
		"label key over its bound":  wireField(cp, 2, wireEntry(string(make([]byte, controlpoint.MaxLabelKeyBytes+1)), "v")),
		"no control point, labels":  wireField(nil, 2, wireEntry("k", "v")),
		"entry with 0-length value": wireField(cp, 2, wireField(wireField(nil, 1, []byte("k")), 2, nil)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) { agreeWithProto(t, b) })
	}
}

func tooManyLabels(b []byte) []byte {
	for i := 0; i <= controlpoint.MaxLabels; i++ {
		b = wireField(b, 2, wireEntry(string(rune('a'+i%26))+string(rune('a'+i/26)), "v"))
	}
	return b
}

// FuzzWireCheck: on any bytes, the hand decoder agrees with the protobuf
// decoder (TestWireCheckAgreesWithProtobuf's cases are the seeds' shape).
func FuzzWireCheck(f *testing.F) {
	full, _ := proto.Marshal(&pb.CheckRequest{ControlPoint: "ingress", Tokens: 1, Labels: map[string]string{"user": "alice", "tier": "free"}})
	f.Add(full)
	f.Add([]byte{})
	f.Add(wireField(nil, 2, wireEntry("k", "\xff")))
	f.Fuzz(agreeWithProto)
}

// BenchmarkDecodeCheck compares the hand decoder with the protobuf
// decoder on loadgen's request (8 labels).
func BenchmarkDecodeCheck(b *testing.B) {
	msg, err := proto.Marshal(&pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{
		"user": "alice", "tier": "free", "http.method": "GET", "http.target": "/api/items",
		"http.host": "example.com", "http.scheme": "https", "region": "eu", "app": "shop",
	}})
	if err != nil {
		b.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(msg)}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wireCheck
			if err := w.UnmarshalGRPC(data); err != nil {
				b.Fatal(err)
			}
			req, err := w.request()
			if err != nil {
				b.Fatal(err)
			}
			flow.FreeLabels(req.Labels) // as a check does once decided
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in pb.CheckRequest
			if err := proto.Unmarshal(msg, &in); err != nil {
				b.Fatal(err)
			}
			if _, err := controlpoint.RequestFromProto(&in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// selfCodec is the agent's codec as far as the check service sees it
// (fluxmeter's wire codec): messages with UnmarshalGRPC decode themselves.
type selfCodec struct {
	encoding.CodecV2
	self *atomic.Int64 // messages that decoded themselves
}

func (c selfCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(interface{ UnmarshalGRPC(mem.BufferSlice) error }); ok {
		c.self.Add(1)
		return m.UnmarshalGRPC(data)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// TestGRPCCheckEitherCodec: Check answers the same over the agent's codec
// (the hand decoder) as over gRPC's default one (the protobuf decoder),
// and through an interceptor, which sees a CheckRequest.
func TestGRPCCheckEitherCodec(t *testing.T) {
	var self atomic.Int64
	var intercepted atomic.Int64
	intercept := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*pb.CheckRequest); !ok || r.GetControlPoint() == "" && len(r.GetLabels()) == 0 {
			t.Errorf("interceptor saw %T %v", req, req)
		}
		intercepted.Add(1)
		return h(ctx, req)
	}
	clients := map[string]pb.FlowControlServiceClient{}
	for name, opts := range map[string][]grpc.ServerOption{
		"default":     nil,
		"self":        {grpc.ForceServerCodecV2(selfCodec{encoding.GetCodecV2("proto"), &self})},
		"interceptor": {grpc.ForceServerCodecV2(selfCodec{encoding.GetCodecV2("proto"), &self}), grpc.UnaryInterceptor(intercept)},
	} {
		s, _ := newTestServer(t, perUserLimit)
		clients[name] = pb.NewFlowControlServiceClient(dialGRPC(t, s, opts...))
	}
	alice := map[string]string{"http.request.header.x_user": "alice", "http.request.header.x_tier": "free"}
	reqs := []*pb.CheckRequest{
		{ControlPoint: "ingress", Labels: alice}, {ControlPoint: "ingress", Labels: alice, Tokens: 2},
		{ControlPoint: "ingress", Labels: alice, Tokens: 3}, {ControlPoint: "ingress", Labels: alice},
		{ControlPoint: "egress"}, {Labels: alice}, {ControlPoint: "ingress", Tokens: -1},
	}
	for i, req := range reqs {
		want, werr := clients["default"].Check(context.Background(), req)
		for _, name := range []string{"self", "interceptor"} {
			got, err := clients[name].Check(context.Background(), req)
			if status.Code(err) != status.Code(werr) || status.Convert(err).Message() != status.Convert(werr).Message() {
				t.Fatalf("request %d over %s: err %v, over the default codec %v", i, name, err, werr)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("request %d over %s: %v, over the default codec %v", i, name, got, want)
			}
		}
	}
	if n := self.Load(); n != int64(2*len(reqs)) {
		t.Errorf("%d requests decoded themselves, want %d", n, 2*len(reqs))
	}
	if n := intercepted.Load(); n != int64(len(reqs)) {
		t.Errorf("interceptor saw %d requests, want %d", n, len(reqs))
	}
}

// TestWireCheckMemoryBounded: a request of many empty label entries (all
// the same key, "") costs no more memory than the protobuf decoder
// spends on it: the label map is not sized by the number of entries on
// the wire, which a client chooses (a 1 MiB request once made a map for
// half a million labels).
func TestWireCheckMemoryBounded(t *testing.T) {
	b := wireField(nil, 1, []byte("ingress"))
	for len(b) < 1<<20 {
		b = wireField(b, 2, nil)
	}
	var w wireCheck
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := w.UnmarshalGRPC(mem.BufferSlice{mem.SliceBuffer(b)}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Fatalf("decoding a %d-byte request of empty label entries allocated %d bytes, want at most 64 KiB", len(b), got)
	}
	if len(w.req.Labels) != 1 {
		t.Fatalf("labels %v, want one empty label", w.req.Labels)
	}
	agreeWithProto(t, b)
}

// TestWireCheckEntryUTF8: a map entry whose first key is not UTF-8 is
// refused even when a later key in the same entry is, as the protobuf
// decoder refuses it.
func TestWireCheckEntryUTF8(t *testing.T) {
	cp := wireField(nil, 1, []byte("ingress"))
	agreeWithProto(t, wireField(cp, 2, append(wireEntry("\xff", "v"), wireField(nil, 1, []byte("k"))...)))
	agreeWithProto(t, wireField(cp, 2, append(wireEntry("k", "\xff"), wireField(nil, 2, []byte("v"))...)))
}

// TestWireCheckAllocations gates the decoder's allocations: one copy of
// the message that every string is a part of, the label map being one of
// flow.NewLabels's, which the check gives back — not one string a key and a value
// (19 for these 8 labels before 2026-12-05, 3 with a map of its own
// before 2026-12-06).
func TestWireCheckAllocations(t *testing.T) {
	msg, err := proto.Marshal(&pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{
		"user": "alice", "tier": "free", "http.method": "GET", "http.target": "/api/items",
		"http.host": "example.com", "http.scheme": "https", "region": "eu", "app": "shop",
	}})
	if err != nil {
		t.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(msg)}
	var w wireCheck
	if n := testing.AllocsPerRun(100, func() {
		flow.FreeLabels(w.req.Labels) // as a check does once decided
		if err := w.UnmarshalGRPC(data); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("decoding a check of 8 labels allocates %v objects, want at most 1", n)
	}
	if got, _ := w.request(); got.Labels["http.target"] != "/api/items" || got.ControlPoint != "ingress" || len(got.Labels) != 8 {
		t.Fatalf("decoded %+v", got)
	}
}
