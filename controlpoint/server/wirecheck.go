package server

import (
	"context"
	"errors"
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// The check request is decoded by hand (issue 20): the generic protobuf
// decoder spends a quarter of the agent's allocations on a request's label
// map, boxing every key and value through reflection. wireCheck decodes
// the three fields of CheckRequest straight into a controlpoint.Request:
// one map and one string per key and value, nothing else, with the
// protobuf decoder's rules (last value of a field wins, a map entry
// without key or value means "", unknown fields and fields of the wrong
// wire type are skipped, strings must be UTF-8, a malformed message is an
// error).
//
// The agent's gRPC codec (fluxmeter.GRPCServerOptions) calls UnmarshalGRPC;
// any other codec sees a protobuf message (the embedded CheckRequest) and
// decodes it the ordinary way, which checkHandler then converts.

// wireCheck is a Check request as the check handler reads it.
type wireCheck struct {
	pb.CheckRequest // filled by a codec that does not call UnmarshalGRPC

	req     controlpoint.Request
	decoded bool // req holds the request

	// While decoding: the message, and the one copy of it that the
	// request's strings are parts of.
	msg    []byte
	copied string
}

var (
	errBadUTF8        = errors.New("server: check request: string field contains invalid UTF-8")
	errBadFieldNumber = errors.New("server: check request: invalid field number")
)

// UnmarshalGRPC decodes a CheckRequest from data.
func (w *wireCheck) UnmarshalGRPC(data mem.BufferSlice) error {
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData() // read only; every string is copied out
	} else {
		b = data.Materialize()
	}
	return w.unmarshal(b)
}

func (w *wireCheck) unmarshal(b []byte) error {
	entries, err := countEntries(b)
	if err != nil {
		return err
	}
	w.req = controlpoint.Request{}
	if len(b) <= wireCopyMax { // one copy: the strings are parts of it
		w.msg, w.copied = b, string(b)
	}
	if entries > 0 {
		// A kept map (flow.FreeLabels): entries on the wire may repeat a
		// key, so their count is no size hint; a request of many grows
		// the map, which is then not kept.
		w.req.Labels = flow.NewLabels()
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:] // countEntries checked every tag and value
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			b = b[n:]
			if !utf8.Valid(v) {
				return errBadUTF8
			}
			w.req.ControlPoint = w.str(v)
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			b = b[n:]
			if err := w.labelEntry(v); err != nil {
				return err
			}
		case num == 3 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			b = b[n:]
			w.req.Tokens = math.Float64frombits(v)
		default:
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
		}
	}
	w.decoded = true
	w.msg = nil // gRPC reuses its buffer
	return nil
}

// countEntries walks b once, checking that every field is well formed,
// and counts the label map's entries.
func countEntries(b []byte) (int, error) {
	entries := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber { // ConsumeTag checks only the lower bound
			return 0, errBadFieldNumber
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		if num == 2 && typ == protowire.BytesType {
			entries++
		}
		b = b[n:]
	}
	return entries, nil
}

// labelEntry decodes one entry of the labels map into w.req.Labels.
func (w *wireCheck) labelEntry(b []byte) error {
	var key, val []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if num > protowire.MaxValidNumber {
			return errBadFieldNumber
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			if !utf8.Valid(v) { // each occurrence, as the protobuf decoder checks
				return errBadUTF8
			}
			if num == 1 {
				key = v
			} else {
				val = v
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	w.req.Labels[w.str(key)] = w.str(val)
	return nil
}

// wireCopyMax is the largest message whose strings share one copy of it;
// a larger one, rare and maybe hostile (many empty or repeated entries),
// gets a copy of each string kept instead.
const wireCopyMax = 4 << 10

// str is v, a part of the message being decoded, as the same part of its
// copy (a copy of its own if the message was not copied whole).
func (w *wireCheck) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if off := cap(w.msg) - cap(v); w.msg != nil && off >= 0 && off+len(v) <= len(w.msg) && &w.msg[off] == &v[0] {
		return w.copied[off : off+len(v)]
	}
	return string(v)
}

// request is the decoded request, or the error RequestFromProto gives.
func (w *wireCheck) request() (controlpoint.Request, error) {
	if !w.decoded {
		return controlpoint.RequestFromProto(&w.CheckRequest)
	}
	return w.req, controlpoint.ValidateRequest(&w.req)
}

// proto is the request as a CheckRequest, for interceptors.
func (w *wireCheck) proto() *pb.CheckRequest {
	if !w.decoded {
		return &w.CheckRequest
	}
	return &pb.CheckRequest{ControlPoint: w.req.ControlPoint, Labels: w.req.Labels, Tokens: w.req.Tokens}
}

// checkHandler is FlowControlService's Check handler: as the generated
// one, but the request is a wireCheck.
func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := &wireCheck{}
	if err := dec(in); err != nil {
		return nil, err
	}
	f := srv.(flowControl)
	if interceptor == nil {
		return f.checkWire(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: pb.FlowControlService_Check_FullMethodName}
	return interceptor(ctx, in.proto(), info, func(ctx context.Context, req any) (any, error) {
		return f.Check(ctx, req.(*pb.CheckRequest))
	})
}

// flowControlDesc is FlowControlService with checkHandler for Check.
var flowControlDesc = func() grpc.ServiceDesc {
	d := pb.FlowControlService_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	for i := range d.Methods {
		if d.Methods[i].MethodName == "Check" {
			d.Methods[i].Handler = checkHandler
		}
	}
	return d
}()

// checkWire is Check for a wireCheck.
func (f flowControl) checkWire(ctx context.Context, in *wireCheck) (*pb.CheckResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	req, err := in.request()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "fluxgate: "+err.Error())
	}
	resp := f.s.check(ctx, &req)
	if in.decoded {
		flow.FreeLabels(req.Labels) // no interceptor saw it
	}
	return resp, nil
}
