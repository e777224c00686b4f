package fluxmeter

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// MaxRequestBytes bounds an OTLP/HTTP request body, before and after gzip.
const MaxRequestBytes = 16 << 20

// Receiver is the OTLP trace receiver: the gRPC TraceService and the
// OTLP/HTTP POST /v1/traces handler, both feeding one Processor. Spans it
// cannot use are reported as a partial success, as the OTLP specification
// asks; malformed requests get an error and the receiver keeps serving.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	proc      *Processor
	malformed *prometheus.CounterVec
}

// NewReceiver returns a receiver feeding proc. Its malformed-request
// counter is registered on reg unless reg is nil.
func NewReceiver(proc *Processor, reg prometheus.Registerer) (*Receiver, error) {
	r := &Receiver{proc: proc, malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fluxgate_otlp_malformed_requests_total",
		Help: "OTLP trace export requests refused as malformed, by transport.",
	}, []string{"transport"})}
	if reg != nil {
		if err := reg.Register(r.malformed); err != nil {
			return nil, fmt.Errorf("fluxmeter: register receiver metrics: %w", err)
		}
		if err := reg.Register(proc); err != nil {
			return nil, fmt.Errorf("fluxmeter: register flux meter metrics: %w", err)
		}
	}
	return r, nil
}

// Export implements the OTLP gRPC TraceService.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	return r.export(req), nil
}

func (r *Receiver) export(req *collectortrace.ExportTraceServiceRequest) *collectortrace.ExportTraceServiceResponse {
	resp := &collectortrace.ExportTraceServiceResponse{}
	if rejected, why := r.proc.Consume(req.GetResourceSpans()); rejected > 0 {
		resp.PartialSuccess = &collectortrace.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: why}
	}
	return resp
}

// ServeHTTP implements OTLP/HTTP: POST /v1/traces with a protobuf
// (application/x-protobuf) or JSON (application/json) body, optionally
// gzip-encoded. The answer uses the request's encoding.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.httpError(w, "", http.StatusMethodNotAllowed, codes.Unimplemented, "OTLP/HTTP takes POST")
		return
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	isJSON := ct == "application/json"
	if !isJSON && ct != "application/x-protobuf" {
		r.httpError(w, "", http.StatusUnsupportedMediaType, codes.InvalidArgument, fmt.Sprintf("unsupported Content-Type %q; want application/x-protobuf or application/json", ct))
		return
	}
	if req.ContentLength > MaxRequestBytes {
		// Refused before reading any of it; the connection is closed
		// rather than drained.
		w.Header().Set("Connection", "close")
		r.httpError(w, ct, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, errTooLarge.Error())
		return
	}
	body, err := readBody(w, req)
	if err != nil {
		code, grpcCode := http.StatusBadRequest, codes.InvalidArgument
		if errors.Is(err, errTooLarge) {
			code, grpcCode = http.StatusRequestEntityTooLarge, codes.ResourceExhausted
			w.Header().Set("Connection", "close")
		}
		r.httpError(w, ct, code, grpcCode, err.Error())
		return
	}
	if !isJSON {
		// Protobuf is read straight from the wire, without allocating per span.
		rejected, why, err := r.proc.ConsumeProto(body)
		if err != nil {
			r.httpError(w, ct, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		resp := &collectortrace.ExportTraceServiceResponse{}
		if rejected > 0 {
			resp.PartialSuccess = &collectortrace.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: why}
		}
		writeMessage(w, ct, http.StatusOK, resp)
		return
	}
	var msg collectortrace.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &msg); err != nil {
		r.httpError(w, ct, http.StatusBadRequest, codes.InvalidArgument, "malformed OTLP trace request: "+err.Error())
		return
	}
	writeMessage(w, ct, http.StatusOK, r.export(&msg))
}

var errTooLarge = errors.New("body larger than 16 MiB")

// readBody reads the body, at most MaxRequestBytes before and after gzip
// (errTooLarge beyond). How long it may take is the server's ReadTimeout.
func readBody(w http.ResponseWriter, req *http.Request) ([]byte, error) {
	var rd io.Reader = http.MaxBytesReader(w, req.Body, MaxRequestBytes)
	switch enc := strings.ToLower(req.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, fmt.Errorf("bad gzip body: %w", err)
		}
		defer func() { _ = zr.Close() }()
		rd = io.LimitReader(zr, MaxRequestBytes+1)
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	body, err := io.ReadAll(rd)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > MaxRequestBytes {
		return nil, errTooLarge
	}
	return body, nil
}

// httpError answers with a google.rpc.Status, as OTLP/HTTP specifies.
func (r *Receiver) httpError(w http.ResponseWriter, ct string, code int, grpcCode codes.Code, msg string) {
	r.malformed.WithLabelValues("http").Inc()
	writeMessage(w, ct, code, &status.Status{Code: int32(grpcCode), Message: msg})
}

func writeMessage(w http.ResponseWriter, ct string, code int, m proto.Message) {
	var b []byte
	if ct == "application/x-protobuf" {
		b, _ = proto.Marshal(m)
	} else {
		ct = "application/json"
		b, _ = protojson.Marshal(m)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
