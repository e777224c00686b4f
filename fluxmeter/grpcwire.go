package fluxmeter

import (
	"context"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// The agent serves OTLP over gRPC with the wire decoder too: a codec keeps
// an Export request as bytes (rawExport), and a hand-written service
// description routes it to ConsumeProto. Responses and every other message
// go through the ordinary protobuf codec.

// rawExport is an ExportTraceServiceRequest left in wire format.
type rawExport struct{ b []byte }

type wireCodec struct{ proto encoding.CodecV2 }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// selfDecoder is a message that decodes itself from the wire: the check
// service's request does (controlpoint/server), so that the agent's check
// port, which this codec serves too, skips the generic protobuf decoder.
// data is valid only until UnmarshalGRPC returns.
type selfDecoder interface {
	UnmarshalGRPC(data mem.BufferSlice) error
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *rawExport:
		m.b = data.Materialize() // gRPC frees data when Unmarshal returns: copy it
		return nil
	case selfDecoder:
		return m.UnmarshalGRPC(data)
	}
	return c.proto.Unmarshal(data, v)
}

func (c wireCodec) Name() string { return c.proto.Name() }

// GRPCServerOptions are the options a gRPC server needs before
// RegisterGRPC: the codec that keeps Export requests in wire format. It
// hands every other message to the protobuf codec, so the server may carry
// other services (the agent's check port does).
func (r *Receiver) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(wireCodec{proto: encoding.GetCodecV2("proto")})}
}

// RegisterGRPC registers the OTLP TraceService on s (built with
// GRPCServerOptions), reading requests with the wire decoder.
func (r *Receiver) RegisterGRPC(s *grpc.Server) { s.RegisterService(&rawTraceService, r) }

// rawTraceServer is the handler type of rawTraceService.
type rawTraceServer interface {
	exportRaw(context.Context, *rawExport) (*collectortrace.ExportTraceServiceResponse, error)
}

// TraceServiceName is the OTLP trace service's full name.
const TraceServiceName = "opentelemetry.proto.collector.trace.v1.TraceService"

var rawTraceService = grpc.ServiceDesc{
	ServiceName: TraceServiceName,
	HandlerType: (*rawTraceServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			defer holdSlot(ctx)() // the message is in memory until the handler returns
			in := &rawExport{}
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(rawTraceServer).exportRaw(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/opentelemetry.proto.collector.trace.v1.TraceService/Export"}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(rawTraceServer).exportRaw(ctx, req.(*rawExport))
			})
		},
	}},
	Metadata: "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

func (r *Receiver) exportRaw(_ context.Context, in *rawExport) (*collectortrace.ExportTraceServiceResponse, error) {
	rejected, why, err := r.proc.ConsumeProto(in.b)
	if err != nil {
		r.malformed.WithLabelValues("grpc").Inc()
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &collectortrace.ExportTraceServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &collectortrace.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: why}
	}
	return resp, nil
}
