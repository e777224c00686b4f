package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/looptls"
	"github.com/fluxgate/fluxgate/policies"
)

// Service runs a Gateway next to an agent, reached through Host: the
// control points decide with the agent's engine, flows go straight to the
// agent's flux meters, metrics land on the agent's registry, and the proxy
// listens on gateway.listen. Construct it before the agent starts (it
// mounts GET /v1/gateway/upstreams on the agent's HTTP API and subscribes
// to the policy store) and Start it, or Run it, after.
//
// The routing state is the gateway section of the config file with the
// store's TrafficPolicies applied (see trafficCompiler); the rate limits
// of TrafficPolicies go to the agent as Policies (Host.SetGatewayPolicies).
// Either changing reconciles at once: a TrafficPolicy written through the
// API applies before the PUT answers. The program's watcher of the config
// file hands changes of the gateway section to ApplyConfig (and changes
// that do not load to RefuseConfig): a refused change leaves the running
// state as it is. Circuits steer the gateway once Start attached it to
// the Host.
type Service struct {
	host   Host
	logger *slog.Logger
	opts   ServiceOptions

	gw atomic.Pointer[Gateway] // set by Start

	recMu    sync.Mutex // serializes reconciling; guards the fields below
	base     Config
	traffic  []*policies.TrafficPolicy // the store's, by key
	compiler trafficCompiler
	problems []string // TrafficPolicies left out, or refused by the gateway
	fileErr  string   // why the config file's last change was refused; "" when applied

	reloads *prometheus.CounterVec // result

	mu     sync.Mutex       // guards the fields below
	srv    *http.Server     // the net/http engine: TLS or h2c listeners
	fsrv   *fasthttp.Server // the fast engine: plain HTTP/1.1 listeners
	fconns *connTracker     // the fast engine's open connections
	lsrv   *LeanServer      // the lean engine (gateway.engine lean), or nil
	osrv   *LoopServer      // the loop engine (gateway.engine loop on a plain listener), or nil
	ln     net.Listener
	addr   net.Addr
	certs  *certs.Reloader // nil without TLS
	cancel context.CancelFunc
	done   chan struct{}
	errs   []error // every error a running part returned

	started chan struct{} // closed when Start succeeded
	errc    chan error    // the first of errs
}

// ServiceOptions configures NewService.
type ServiceOptions struct {
	// Logger receives the gateway's logs. Nil means silent.
	Logger *slog.Logger
	// Config is the gateway section to start with. The zero value listens
	// nowhere useful: start from DefaultConfig.
	Config Config
	// ShutdownTimeout bounds how long Run's stop waits for in-flight
	// requests. Default 15s.
	ShutdownTimeout time.Duration
}

// NewService prepares a gateway for a with the section cfg, without live
// reload of the config file. Nil logger means silent.
func NewService(h Host, cfg Config, logger *slog.Logger) *Service {
	return NewServiceWithOptions(h, ServiceOptions{Config: cfg, Logger: logger})
}

// NewServiceWithOptions prepares a gateway for a.
func NewServiceWithOptions(h Host, opts ServiceOptions) *Service {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	s := &Service{host: h, logger: logger, opts: opts, base: opts.Config, started: make(chan struct{}), errc: make(chan error, 1)}
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fluxgate_gateway_config_reloads_total",
		Help: "Changes of the gateway config file, by result: success, or failure when refused and the running routing kept.",
	}, []string{"result"})
	if err := h.Registerer().Register(s.reloads); err != nil {
		logger.Warn("gateway config reload metric not registered", "err", err)
	}
	h.SubscribeTrafficPolicies(s.policiesChanged) // those already loaded too, if the agent runs
	h.RegisterHealth("gateway", s.health)
	h.HandleHTTP("GET /v1/gateway/upstreams", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g := s.gw.Load(); g != nil {
			g.ServeStatus(w, r)
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "gateway not started"})
	}))
	return s
}

// Start builds the gateway from the agent's config and TrafficPolicies,
// binds gateway.listen and serves in the background. The agent must be
// started.
func (s *Service) Start(ctx context.Context) error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	cfg, ps := s.compileLocked()
	upTLS, err := UpstreamTLS(cfg.UpstreamTLS)
	if err != nil {
		return err
	}
	opts := Options{
		UpstreamTLSConfig: upTLS,
		Config:            cfg,
		Checker:           s.host.Checker(),
		Registerer:        s.host.Registerer(),
		Logger:            s.logger,
		Flows:             s.host.Flows(), // flows straight to the flux meters, no span round trip
	}
	g, err := New(opts)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen: %w", err)
	}
	fitOpenFiles(g.conns, g.logger)
	osrv, err := s.loopServer(g, cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if osrv == nil || cfg.TLS.Enabled() {
		// The loop engine counts on its loops a plain listener's
		// connections; the others, and TLS ones, are accepted through
		// the cap: a handshake holds a slot too.
		ln = g.conns.Listener(ln)
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnState:         trackConnState,
	}
	addr := ln.Addr()
	certs, err := frontend(srv, &ln, cfg, s.host.Registerer(), s.logger, tlsWrap(osrv))
	if err != nil {
		_ = ln.Close()
		return err
	}
	var fsrv *fasthttp.Server
	var fconns *connTracker
	var lsrv *LeanServer
	switch {
	case cfg.Engine == EngineNet || cfg.Engine == EngineFast && (certs != nil || cfg.H2C):
	case cfg.Engine == EngineFast:
		fsrv, fconns = g.newFastServer(slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn))
		srv = nil
	case osrv != nil: // the loop engine (auto's choice on Linux), which hands what it does not serve to lean
		osrv.serveWith(g, cfg, srv, certs != nil, s.logger)
		srv = nil
	case certs != nil: // the lean engine for HTTP/1.1, gateway.http2.server for HTTP/2
		lsrv = g.NewLeanServer(s.logger)
		lsrv.ServeTLSWith(srv)
		lsrv.ServeHTTP2With(http2Server(g, cfg, s.logger))
	case cfg.H2C: // the lean engine for HTTP/1.1, gateway.http2.server for h2c by prior knowledge, srv (h2c's handler) for Upgrade: h2c
		lsrv = g.NewLeanServer(s.logger)
		lsrv.ServeH2CWith(srv)
		lsrv.ServeHTTP2With(http2Server(g, cfg, s.logger))
	default: // lean, and auto where the loop engine does not run: the lean engine, which hands what it does not serve to the fast one
		lsrv = g.NewLeanServer(s.logger)
		srv = nil
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.fsrv, s.fconns, s.lsrv, s.osrv, s.ln, s.addr, s.cancel, s.done, s.certs = srv, fsrv, fconns, lsrv, osrv, ln, addr, cancel, done, certs
	s.mu.Unlock()
	s.gw.Store(g)
	s.host.Attach(g)
	s.host.SetGatewayPolicies(ps)
	var wg sync.WaitGroup
	wg.Go(func() { s.check("health checks", g.Run(runCtx)) })
	if certs != nil {
		wg.Go(func() { s.check("certificate reloader", certs.Run(runCtx)) })
	}
	wg.Go(func() {
		var err error
		switch {
		case osrv != nil:
			err = osrv.Serve(ln)
		case lsrv != nil:
			err = lsrv.Serve(ln)
		case fsrv != nil:
			err = fsrv.Serve(FastListener(ln))
		default:
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			err = nil // stopped
		}
		s.check("server", err)
	})
	go func() { wg.Wait(); close(done) }()
	s.logger.Info("gateway listening", "addr", addr.String(), "tls", certs != nil, "h2c", cfg.H2C && certs == nil, "engine", engineName(fsrv, lsrv, osrv),
		"routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	close(s.started)
	return nil
}

// http2Server is the gateway's own HTTP/2 server for g when
// gateway.http2.server asks for it, else nil (net/http's serves).
func http2Server(g *Gateway, cfg Config, logger *slog.Logger) *h2.Server {
	if cfg.HTTP2.Server == HTTP2ServerNet {
		return nil
	}
	return g.NewHTTP2Server(logger)
}

// tlsWrap is what a TLS listener builds its connections' TLS on: the
// loop engine's wrapper, whose connections move to a loop after their
// handshake, or nil (the connection accepted).
func tlsWrap(osrv *LoopServer) func(net.Conn) net.Conn {
	if osrv == nil {
		return nil
	}
	return looptls.Wrap
}

// loopServer is the loop engine's server for g when cfg is served on
// loops, else nil. Where the loops cannot start, engine auto gets nil
// (the lean engine serves all a loop would have) and a warning; engine
// loop, asked for by name, the error.
func (s *Service) loopServer(g *Gateway, cfg Config) (*LoopServer, error) {
	if !servesOnLoops(cfg) {
		return nil, nil
	}
	osrv, err := newLoopServer(g, s.logger, 0)
	if err != nil && cfg.Engine != EngineLoop {
		s.logger.Warn("gateway: the loop engine cannot start here; the lean engine serves instead", "err", err)
		return nil, nil
	}
	return osrv, err
}

// newLoopServer is (*Gateway).NewLoopServer; tests make it fail.
var newLoopServer = (*Gateway).NewLoopServer

// servesOnLoops reports whether cfg is served by the loop engine: asked
// for, or auto on Linux, on a plain listener or over TLS, without h2c
// unless h2c is served on the loops (gateway.http2.server loop).
func servesOnLoops(cfg Config) bool {
	auto := cfg.Engine == "" || cfg.Engine == EngineAuto
	return (cfg.Engine == EngineLoop || auto && loopsSupported) && (!cfg.H2C || cfg.http2Server() == HTTP2ServerLoop)
}

// http2Server is what serves HTTP/2 clients (gateway.http2.server): as
// set, or by default loop where the loop engine may serve (engine loop,
// or auto on Linux), lean elsewhere.
func (c Config) http2Server() string {
	if c.HTTP2.Server != "" {
		return c.HTTP2.Server
	}
	if c.Engine == EngineLoop || (c.Engine == "" || c.Engine == EngineAuto) && loopsSupported {
		return HTTP2ServerLoop
	}
	return HTTP2ServerLean
}

// check records err, a running part's, unless nil; the first also goes
// to Run, which then stops the gateway.
func (s *Service) check(part string, err error) {
	if err == nil {
		return
	}
	err = fmt.Errorf("gateway: %s: %w", part, err)
	s.mu.Lock()
	s.errs = append(s.errs, err)
	first := len(s.errs) == 1
	s.mu.Unlock()
	if first {
		s.errc <- err // buffered for one: the first error only
	}
}

// Started is closed once Start has succeeded: the gateway listens.
func (s *Service) Started() <-chan struct{} { return s.started }

// Run starts the gateway (Start), serves until ctx is done or a part of
// it fails, then stops it (Stop, within ShutdownTimeout). It returns every
// error a part returned and Stop's, or nil after a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-s.errc:
		s.logger.Error("gateway part failed; stopping", "err", err)
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	stopErr := s.Stop(stopCtx)
	s.mu.Lock()
	errs := append(slices.Clone(s.errs), stopErr)
	s.mu.Unlock()
	return errors.Join(errs...)
}

// Engine names the server engine serving the gateway: "loop", "lean",
// "fast" or "net" (see gateway.engine); "" before Start.
func (s *Service) Engine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil && s.fsrv == nil && s.lsrv == nil && s.osrv == nil {
		return ""
	}
	return engineName(s.fsrv, s.lsrv, s.osrv)
}

// engineName names the server engine for the start-up log.
func engineName(fsrv *fasthttp.Server, lsrv *LeanServer, osrv *LoopServer) string {
	if osrv != nil {
		return EngineLoop
	}
	if lsrv != nil {
		return EngineLean
	}
	if fsrv != nil {
		return "fast"
	}
	return "net"
}

// Gateway is the running gateway, or nil before Start.
func (s *Service) Gateway() *Gateway { return s.gw.Load() }

// Addr is the bound proxy address, or nil before Start.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop lets in-flight requests finish (within ctx) and stops the health
// checks.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, fsrv, fconns, lsrv, osrv, ln, cancel, done, certs := s.srv, s.fsrv, s.fconns, s.lsrv, s.osrv, s.ln, s.cancel, s.done, s.certs
	s.mu.Unlock()
	if srv == nil && fsrv == nil && lsrv == nil && osrv == nil {
		return nil
	}
	s.host.Attach(nil)
	var errs []error
	if osrv != nil {
		if err := osrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		_ = ln.Close()
	} else if lsrv != nil {
		_ = ln.Close()
		if err := lsrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	} else if fsrv != nil {
		// Closing the listener first also stops a Serve that has not
		// taken it yet, which fasthttp's shutdown would not see.
		_ = ln.Close()
		if err := fsrv.ShutdownWithContext(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
			fconns.closeAll() // out of time: as net/http's Close does
		}
	} else if err := srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
		_ = srv.Close()
	}
	cancel()
	<-done
	if g := s.gw.Load(); g != nil {
		g.Close()
	}
	if certs != nil {
		certs.Close()
	}
	return errors.Join(errs...)
}

// compileLocked applies the TrafficPolicies to the file's gateway config
// and logs those it leaves out.
func (s *Service) compileLocked() (Config, []*policies.Policy) {
	cfg, ps, errs := s.compiler.compile(s.base, s.traffic)
	s.problems = s.problems[:0]
	for _, err := range errs {
		s.logger.Warn("traffic policy not applied", "err", err)
		s.problems = append(s.problems, err.Error())
	}
	return cfg, ps
}

// reconcileLocked applies the current config and TrafficPolicies to the
// running gateway. On error the running state stays.
func (s *Service) reconcileLocked(why string) error {
	start := time.Now()
	cfg, ps := s.compileLocked()
	g := s.gw.Load()
	if g == nil {
		return nil // Start compiles
	}
	if err := g.Update(cfg); err != nil {
		return err
	}
	s.host.SetGatewayPolicies(ps)
	s.logger.Info("gateway reconciled", "cause", why, "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams),
		"traffic_policies", len(s.traffic), "compiled_policies", len(ps), "took", time.Since(start))
	return nil
}

// policiesChanged is the store subscription: it reconciles when the
// TrafficPolicies changed.
func (s *Service) policiesChanged(tps []*policies.TrafficPolicy) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if slices.Equal(tps, s.traffic) {
		return
	}
	s.traffic = tps
	if err := s.reconcileLocked("traffic policies changed"); err != nil {
		s.logger.Error("traffic policies refused by the gateway; the running routing keeps serving", "err", err)
		s.problems = append(s.problems, err.Error())
	}
}

// health reports TrafficPolicies left out and a refused config change.
func (s *Service) health() HealthStatus {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	problems := slices.Clone(s.problems)
	if s.fileErr != "" {
		problems = append(problems, s.fileErr)
	}
	if len(problems) == 0 {
		return HealthStatus{Healthy: true, Message: fmt.Sprintf("%d routes, %d traffic policies", len(s.base.Routes), len(s.traffic))}
	}
	return HealthStatus{Message: "gateway config or traffic policies not applied; the rest keeps serving", Errors: problems}
}
