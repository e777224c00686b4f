package fluxmeter

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// MaxRequestBytes bounds an OTLP/HTTP request body, before and after gzip.
const MaxRequestBytes = 16 << 20

// MaxInFlightBytes bounds the memory the bodies of all OTLP/HTTP requests
// being read hold together: four bodies of the largest size, or many
// ordinary batches. A request whose body would take the total over it is
// answered 503 with Retry-After, which OTLP exporters retry, instead of
// being buffered: without it, clients that send most of a 16 MiB body and
// stall held 16 MiB each until the read timeout (issue 14: 40 of them
// took 390 MiB). Buffers a body outgrew are garbage the next collection
// frees, so the heap they take is at most twice this.
const MaxInFlightBytes = 4 * (MaxRequestBytes + 1)

// Receiver is the OTLP trace receiver: the gRPC TraceService and the
// OTLP/HTTP POST /v1/traces handler, both feeding one Processor. Spans it
// cannot use are reported as a partial success, as the OTLP specification
// asks; malformed requests get an error and the receiver keeps serving.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	proc      *Processor
	malformed *prometheus.CounterVec
	busy      *prometheus.CounterVec // by transport: refused for want of memory
	inflight  bodyBudget
	gate      exportGate // OTLP/gRPC Export calls in flight (grpcgate.go)
}

// NewReceiver returns a receiver feeding proc. Its malformed-request
// counter is registered on reg unless reg is nil.
func NewReceiver(proc *Processor, reg prometheus.Registerer) (*Receiver, error) {
	r := &Receiver{proc: proc, inflight: bodyBudget{max: MaxInFlightBytes}, malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fluxgate_otlp_malformed_requests_total",
		Help: "OTLP trace export requests refused as malformed, by transport.",
	}, []string{"transport"})}
	r.busy = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fluxgate_otlp_busy_refusals_total",
		Help: "OTLP trace export requests refused at once because the exports in flight hold their memory budget (HTTP: 503, gRPC: Unavailable), by transport.",
	}, []string{"transport"})
	r.busy.WithLabelValues("http")
	r.busy.WithLabelValues("grpc")
	r.gate.slots = make(chan struct{}, MaxGRPCExportsInFlight)
	if reg != nil {
		if err := reg.Register(r.busy); err != nil {
			return nil, fmt.Errorf("fluxmeter: register receiver metrics: %w", err)
		}
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
	body, held, err := readBody(w, req, &r.inflight)
	defer r.inflight.give(held)
	if errors.Is(err, errBusy) {
		r.busy.WithLabelValues("http").Inc()
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", strconv.Itoa(busyRetryAfter))
		writeMessage(w, ct, http.StatusServiceUnavailable, &status.Status{Code: int32(codes.Unavailable), Message: err.Error()})
		return
	}
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

var errBusy = fmt.Errorf("OTLP/HTTP bodies in flight hold %d MiB: retry later", MaxInFlightBytes>>20)

// busyRetryAfter is the Retry-After, in seconds, of a 503 for errBusy.
const busyRetryAfter = 1

// readBody reads the body, at most MaxRequestBytes before and after gzip
// (errTooLarge beyond), taking the memory it holds from budget (errBusy
// when the budget is spent). held is what it took, to give back once the
// body is no longer used, error or not. How long reading may take is the
// server's ReadTimeout.
func readBody(w http.ResponseWriter, req *http.Request, budget *bodyBudget) (body []byte, held int64, err error) {
	var rd io.Reader = http.MaxBytesReader(w, req.Body, MaxRequestBytes)
	size := int64(-1) // unknown: the size after gzip is never announced
	switch enc := strings.ToLower(req.Header.Get("Content-Encoding")); enc {
	case "", "identity":
		size = req.ContentLength
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, 0, fmt.Errorf("bad gzip body: %w", err)
		}
		defer func() { _ = zr.Close() }()
		rd = io.LimitReader(zr, MaxRequestBytes+1)
	default:
		return nil, 0, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	body, held, err = readAll(rd, size, budget)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, held, errTooLarge
	}
	if errors.Is(err, errBusy) {
		return nil, held, err
	}
	if err != nil {
		return nil, held, fmt.Errorf("read body: %w", err)
	}
	if len(body) > MaxRequestBytes {
		return nil, held, errTooLarge
	}
	return body, held, nil
}

// readAll is io.ReadAll that takes the capacity of its buffer from
// budget as it grows, and returns what it took. The buffer doubles from
// 64 KiB up to size+1 (size, when known, is the length announced) or
// MaxRequestBytes+1, so a client holds budget in proportion to what it
// has sent, not to what it announced.
func readAll(rd io.Reader, size int64, budget *bodyBudget) ([]byte, int64, error) {
	limit := int64(MaxRequestBytes) + 1
	if size >= 0 {
		limit = min(size, MaxRequestBytes) + 1 // +1: room to see EOF
	}
	var buf []byte
	var held int64
	for {
		if len(buf) == cap(buf) {
			grow := min(max(64<<10, 2*int64(cap(buf))), limit)
			if grow <= int64(cap(buf)) { // a body longer than announced
				grow = min(2*int64(cap(buf)), MaxRequestBytes+1)
				if grow <= int64(cap(buf)) {
					return nil, held, errTooLarge
				}
			}
			if !budget.take(grow - int64(cap(buf))) {
				return nil, held, errBusy
			}
			held += grow - int64(cap(buf))
			nb := make([]byte, len(buf), grow)
			copy(nb, buf)
			buf = nb
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, held, nil
		}
		if err != nil {
			return nil, held, err
		}
	}
}

// bodyBudget is the memory OTLP/HTTP bodies being read may hold
// together. Its zero value holds nothing.
type bodyBudget struct {
	mu   sync.Mutex
	used int64 // guarded by mu
	max  int64
}

// take reserves n bytes, or reports false when they do not fit.
func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// give returns n bytes that take reserved.
func (b *bodyBudget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
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
