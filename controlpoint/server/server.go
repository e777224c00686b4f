package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/fluxgate/fluxgate/controlpoint"
	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// DefaultControlPoint is the control point of an HTTP flow whose adapter
// names none (ext_authz without a "control-point" context extension,
// auth_request without X-FluxGate-Control-Point).
const DefaultControlPoint = "ingress"

// MaxBodyBytes bounds the body of POST /v1/check and POST /v1/explain.
const MaxBodyBytes = 1 << 20

// Options configures a Server.
type Options struct {
	// Engine decides. Required.
	Engine *controlpoint.Engine
	// Logger receives malformed-request reports at debug level. Nil means
	// silent.
	Logger *slog.Logger
	// Now is the clock the engine decides with. Nil means time.Now.
	Now func() time.Time
	// ApertureCacheBytes bounds the keys and values of Aperture's result
	// and global caches together; 0 means DefaultApertureCacheBytes.
	ApertureCacheBytes int64
	// Registerer receives the Envoy access-log service's metrics
	// (fluxgate_envoy_access_log_*). Nil means none.
	Registerer prometheus.Registerer
	// MaxAccessLogStreams bounds the Envoy access-log streams served at
	// once; 0 means DefaultMaxAccessLogStreams.
	MaxAccessLogStreams int
}

// Server serves the check API over every adapter. It is safe for
// concurrent use.
type Server struct {
	engine *controlpoint.Engine
	logger *slog.Logger
	now    func() time.Time
	pool   sync.Pool // of *controlpoint.Decision
	cache  *kvCache  // Aperture's result and global caches

	als      *accessLogMetrics
	alsSlots streamSlots
}

// New returns a Server for opts. A nil opts.Engine is a programming error
// and panics, as http.Handle does with a nil handler.
func New(opts Options) *Server {
	if opts.Engine == nil {
		panic("server: Options.Engine is nil")
	}
	s := &Server{engine: opts.Engine, logger: opts.Logger, now: opts.Now}
	if opts.ApertureCacheBytes <= 0 {
		opts.ApertureCacheBytes = DefaultApertureCacheBytes
	}
	s.cache = newKVCache(opts.ApertureCacheBytes)
	if opts.MaxAccessLogStreams <= 0 {
		opts.MaxAccessLogStreams = DefaultMaxAccessLogStreams
	}
	s.alsSlots.max = int64(opts.MaxAccessLogStreams)
	s.als = newAccessLogMetrics()
	if opts.Registerer != nil {
		for _, c := range s.als.collectors() {
			// Two servers on one registry (tests) share nothing: the
			// second keeps its own, unregistered, collectors.
			_ = opts.Registerer.Register(c)
		}
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.pool.New = func() any { return new(controlpoint.Decision) }
	return s
}

// RegisterHTTP mounts the HTTP adapters with handle, which is typically a
// (*http.ServeMux).Handle or an agent's HandleHTTP. Patterns use the Go
// 1.22 method syntax.
func (s *Server) RegisterHTTP(handle func(pattern string, h http.Handler)) {
	handle("POST /v1/check", http.HandlerFunc(s.serveCheckJSON))
	handle("POST /v1/flow/end", http.HandlerFunc(s.serveFlowEndJSON))
	handle("GET /v1/check/http", http.HandlerFunc(s.serveAuthRequest))
	handle("POST /v1/check/http", http.HandlerFunc(s.serveAuthRequest))
	handle("POST /v1/explain", http.HandlerFunc(s.serveExplain))
	handle("GET /v1/controlpoints", http.HandlerFunc(s.serveControlPoints))
}

// RegisterGRPC registers FlowControlService, Aperture's
// FlowControlService and FlowControlServiceHTTP, and Envoy's
// Authorization and AccessLogService services on g.
func (s *Server) RegisterGRPC(g grpc.ServiceRegistrar) {
	g.RegisterService(&flowControlDesc, flowControl{s: s})
	ap.RegisterFlowControlServiceServer(g, apertureFlowControl{s: s})
	ap.RegisterFlowControlServiceHTTPServer(g, apertureHTTP{s: s})
	registerAuthorization(g, s)
	registerAccessLog(g, s)
}

// Handler is a mux serving only the HTTP adapters, for servers of their
// own (tests, sidecars).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.RegisterHTTP(mux.Handle)
	return mux
}

// check asks the engine about req and converts the decision for the
// check API's wire (gRPC and JSON).
func (s *Server) check(ctx context.Context, req *controlpoint.Request) *pb.CheckResponse {
	d := s.decide(ctx, req)
	resp := d.ToProto()
	s.release(d)
	return resp
}

// decide asks the engine about req. Give the decision back with release
// when done with it.
func (s *Server) decide(ctx context.Context, req *controlpoint.Request) *controlpoint.Decision {
	d := s.pool.Get().(*controlpoint.Decision)
	s.engine.Check(ctx, s.now(), req, d)
	return d
}

// release returns a decision of decide to the pool; d must not be used
// afterwards.
func (s *Server) release(d *controlpoint.Decision) { s.pool.Put(d) }

// classifierLabels are the labels the classifiers created for a flow,
// later results winning; nil when there are none.
func classifierLabels(d *controlpoint.Decision) map[string]string {
	var out map[string]string
	for _, c := range d.Classifiers {
		for k, v := range c.Labels {
			if out == nil {
				out = make(map[string]string)
			}
			out[k] = v
		}
	}
	return out
}

// errorBody is the JSON shape of an HTTP adapter's error.
type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.logger.Debug("malformed check request", "path", r.URL.Path, "status", code, "err", msg)
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b = []byte(`{"error":"server: encode response"}`)
	}
	writeBody(w, code, "application/json", append(b, '\n'))
}

func writeBody(w http.ResponseWriter, code int, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
