package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/tap"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/circuit/promql"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/server"
	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/loopgrpc"
	"github.com/fluxgate/fluxgate/internal/loophttp"
	"github.com/fluxgate/fluxgate/kube"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/ui"
)

// Options configures an Agent.
type Options struct {
	// Config is the agent configuration; see DefaultConfig.
	Config Config
	// Logger receives the agent's logs. Nil means silent.
	Logger *slog.Logger
	// Registry collects every metric the agent exposes on /metrics.
	// Nil means NewRegistry(time.Now()).
	Registry *prometheus.Registry
	// Store is the policy store. Nil means one on Config.Policies.Dir,
	// registered on Registry, that refuses policies Engine cannot compile.
	Store *PolicyStore
	// Engine is the decision engine. Nil means one for the configured
	// agent group, registered on Registry.
	Engine *controlpoint.Engine
	// ShutdownTimeout bounds how long Stop waits for in-flight requests.
	// Default 15s.
	ShutdownTimeout time.Duration
	// LogLevel is Logger's level (NewLoggerLevel), changed when
	// ApplyConfig brings a new log.level. Nil: log.level needs a restart.
	LogLevel *slog.LevelVar
}

// Agent serves the HTTP API, gRPC and /metrics, and runs the policy store.
type Agent struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	store    *PolicyStore
	engine   *controlpoint.Engine
	circuits *circuit.Runtime
	query    querySource // PromQL for circuits: embedded TSDB or a Prometheus server
	closers  []io.Closer // clients New opened (Redis), closed by Stop
	alerts   *circuit.AlertmanagerSink
	ext      extensions // actuator kinds and policies of other parts (extensions.go)
	ui       *ui.UI     // the live view under /ui/ (ui.go)
	tsdb     *promql.Embedded
	kube     *kube.PolicyWatcher // nil unless kubernetes.enabled (kubernetes.go)
	// kubeStatus writes the custom resources' status; nil unless
	// kubernetes.status. kubeObjs are the watched objects, guarded by kubeMu.
	kubeStatus *kube.StatusReporter
	kubeMu     sync.Mutex
	kubeObjs   []kube.Object
	// Config file changes (configreload.go).
	level    *slog.LevelVar
	cfgMu    sync.Mutex         // serializes ApplyConfig; guards fileCfg
	fileCfg  Config             // the config file's content when last applied
	targets  *discoveredTargets // targetRef discovery; nil unless kubernetes.discovery
	meters   *fluxmeter.Processor
	otlp     *fluxmeter.Receiver
	health   *Health
	grpcHlth *health.Server
	certs    *certs.Reloader // TLS on the listeners (tls.go); nil without
	started  time.Time
	timeout  time.Duration

	mux         *http.ServeMux
	operator    []string               // patterns behind the admin token, for the start-up log
	refused     *prometheus.CounterVec // fluxgate_api_refused_total
	connMetrics *connMetrics           // the listeners' caps', by listener
	grpc        *grpc.Server
	otlpGRPC    *grpc.Server
	httpSrv     *http.Server
	httpLoops   *loophttp.Server // the HTTP port's event loops (httploop.go); nil when net/http serves it alone
	grpcLoops   *loopgrpc.Server // the gRPC port's (grpcloop.go); nil when grpc-go serves it alone
	grpcGuards  *grpcGuards      // the gRPC port's tokens
	grpcTap     tap.ServerInHandle
	check       *server.Server // the check API's adapters (checkapi.go)
	metrics     *http.Server
	probes      *http.Server // nil without server.probe_port
	otlpHTTP    *http.Server
	ready       atomic.Bool
	stopping    atomic.Bool

	mu      sync.Mutex              // guards addrs, limits, cancel, runCtx and runErrs
	addrs   map[string]net.Addr     // bound listeners by name
	limits  map[string]*conncap.Cap // their connection caps, by name
	cancel  context.CancelFunc      // stops the goroutines Start began
	runCtx  context.Context         // theirs (goRun)
	runErrs []error                 // every error a part returned (fail)
	wg      sync.WaitGroup          // the parts goRun started
	errc    chan error              // the first of runErrs
	up      chan struct{}           // closed when Start succeeded
}

// Names of the listeners, as used in logs and by Addr.
const (
	ListenerHTTP     = "http"
	ListenerGRPC     = "grpc"
	ListenerMetrics  = "metrics"
	ListenerOTLPGRPC = "otlp_grpc"
	ListenerOTLPHTTP = "otlp_http"
	ListenerProbe    = "probe" // server.probe_port: health only
)

// listenerNames lists the listeners in the order Start binds them.
var listenerNames = []string{ListenerHTTP, ListenerGRPC, ListenerMetrics, ListenerOTLPGRPC, ListenerOTLPHTTP, ListenerProbe}

// listenerPortKeys are the config keys of the listeners' ports.
var listenerPortKeys = map[string]string{
	ListenerHTTP: "server.http_port", ListenerGRPC: "server.grpc_port", ListenerMetrics: "metrics.port",
	ListenerOTLPGRPC: "otlp.grpc_port", ListenerOTLPHTTP: "otlp.http_port", ListenerProbe: "server.probe_port",
}

// New builds an Agent. It binds nothing: Start does.
func New(opts Options) (*Agent, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:      opts.Config,
		logger:   opts.Logger,
		registry: opts.Registry,
		store:    opts.Store,
		engine:   opts.Engine,
		health:   NewHealth(),
		grpcHlth: health.NewServer(),
		started:  time.Now(),
		timeout:  opts.ShutdownTimeout,
		mux:      http.NewServeMux(),
		addrs:    make(map[string]net.Addr),
		errc:     make(chan error, 1),
		up:       make(chan struct{}),

		level:   opts.LogLevel,
		fileCfg: opts.Config,
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.registry == nil {
		a.registry = NewRegistry(a.started)
	}
	if a.timeout <= 0 {
		a.timeout = 15 * time.Second
	}
	refused, err := newRefusedCounter(a.registry)
	if err != nil {
		return nil, fmt.Errorf("agent: register metrics: %w", err)
	}
	a.refused = refused
	a.connMetrics = newConnMetrics(a)
	if err := a.registry.Register(a.connMetrics); err != nil {
		return nil, fmt.Errorf("agent: register metrics: %w", err)
	}
	rl, err := a.newCerts()
	if err != nil {
		return nil, err
	}
	a.certs = rl
	if err := a.setupRedis(); err != nil {
		return nil, err
	}
	if a.engine == nil {
		e, err := controlpoint.New(controlpoint.Options{AgentGroup: a.cfg.Agent.AgentGroup, Logger: a.logger, Registerer: a.registry,
			RateLimiterMemory: a.cfg.Limits.rateLimiterMemory()})
		if err != nil {
			return nil, err
		}
		a.engine = e
	}
	if err := a.newQuerySource(); err != nil {
		return nil, err
	}
	var alerts circuit.AlertSink
	if addr := a.cfg.Alertmanager.Address; addr != "" {
		sink, err := circuit.NewAlertmanagerSink(circuit.AlertmanagerOptions{Address: addr, Logger: a.logger})
		if err != nil {
			return nil, fmt.Errorf("agent: alertmanager.address: %w", err)
		}
		a.alerts, alerts = sink, sink
		a.health.Register("alertmanager", false, remoteHealth("alerts go to", addr, sink.Health))
	}
	a.ext.engine = a.engine // the circuits' actuator inputs go through a.ext
	rt, err := circuit.NewRuntime(circuit.Options{Query: a.query, Actuators: &a.ext, Alerts: alerts, Logger: a.logger, Registerer: a.registry})
	if err != nil {
		return nil, err
	}
	a.circuits = rt
	if a.store == nil {
		s, err := NewPolicyStore(StoreOptions{Dir: a.cfg.Policies.Dir, Logger: a.logger, Registerer: a.registry, Check: a.checkPolicy})
		if err != nil {
			return nil, err
		}
		a.store = s
	}
	if err := a.setupKubernetes(); err != nil {
		return nil, err
	}
	a.meters = fluxmeter.New(fluxmeter.Options{Matcher: a.engine})
	recv, err := fluxmeter.NewReceiver(a.meters, a.registry)
	if err != nil {
		return nil, err
	}
	a.otlp = recv
	otlpOpts := append(recv.GRPCServerOptions(), grpcOptions(a.cfg.Server, otlpMaxRecv, otlpWorkers)...)
	otlpOpts = append(otlpOpts, a.grpcTLS(ListenerOTLPGRPC)...)
	// Tokens first, so that a refused caller takes no export slot.
	otlpOpts = append(otlpOpts, grpc.InTapHandle(chainTaps(newGRPCGuards(a.refused, grpcGuard{a.cfg.OTLP.Token, surfaceOTLP}, nil).tap(), recv.GRPCAdmit)))
	a.otlpGRPC = grpc.NewServer(otlpOpts...)
	recv.RegisterGRPC(a.otlpGRPC)
	a.store.Subscribe(a.ext.indexForeign) // before installPolicies
	a.store.Subscribe(a.installPolicies)
	a.grpcHlth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	// The check port also takes OTLP spans, as Aperture's SDKs send them
	// to the address they check with. Its services but health need
	// check.token when it is set, and spans otlp.token.
	checkOpts := append(recv.GRPCServerOptions(), grpcOptions(a.cfg.Server, grpcMaxCheckMsg, checkWorkers())...)
	checkOpts = append(checkOpts, a.grpcTLS(ListenerGRPC)...)
	a.grpcGuards = newGRPCGuards(a.refused, grpcGuard{a.cfg.Check.Token, surfaceCheck},
		map[string]grpcGuard{fluxmeter.TraceServiceName: {a.cfg.OTLP.Token, surfaceOTLP}},
		healthpb.Health_ServiceDesc.ServiceName)
	a.grpcTap = chainTaps(a.grpcGuards.tap(), recv.GRPCAdmit)
	checkOpts = append(checkOpts, grpc.InTapHandle(a.grpcTap))
	a.grpc = grpc.NewServer(checkOpts...)
	healthpb.RegisterHealthServer(a.grpc, a.grpcHlth)
	recv.RegisterGRPC(a.grpc)

	a.health.Register("policy_store", true, a.store.Health)
	a.health.Register("grpc", true, func() ComponentHealth {
		if a.ready.Load() {
			return ComponentHealth{Status: StatusHealthy}
		}
		return ComponentHealth{Status: StatusUnhealthy, Message: "not serving"}
	})

	a.registerProbes(a.mux)
	a.mux.HandleFunc("GET /v1/monitoring/metrics", a.serveSystemStats)
	a.registerAdmin(a.mux)
	a.registerCheckAPI()
	a.registerCircuitAPI()
	a.registerUI()
	return a, nil
}

// registerProbes mounts what probes ask on mux: liveness, readiness and
// the health report.
func (a *Agent) registerProbes(mux *http.ServeMux) {
	mux.Handle("GET /v1/monitoring/health", a.health)
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", a.serveReady)
}

// installPolicies hands the store's policies, and the compiled ones of
// other parts, to the decision engine, flux meters and circuits.
func (a *Agent) installPolicies(_, cur *PolicySnapshot) {
	a.ext.mu.Lock() // one install at a time, of the newest snapshot
	defer a.ext.mu.Unlock()
	if latest := a.store.Snapshot(); latest.Version > cur.Version {
		cur = latest
	}
	var ps []*policies.Policy
	for _, e := range cur.Sorted() {
		if p, ok := e.Object.(*policies.Policy); ok {
			ps = append(ps, p)
		}
	}
	ps = append(ps, a.ext.compiledLocked()...) // SetCompiledPolicies
	if err := a.engine.SetPolicies(ps); err != nil {
		a.logger.Error("decision engine refused policies; their last good versions keep running", "err", err)
	}
	a.meters.SetPolicies(ps)
	if err := a.circuits.SetPolicies(ps); err != nil {
		a.logger.Error("circuit runtime refused policies; their last good versions keep running", "err", err)
	}
}

// checkPolicy is the store's check hook: a policy the decision engine or
// the circuit runtime cannot compile is refused like a parse error. Lint
// warnings are logged and refuse nothing.
func (a *Agent) checkPolicy(obj policies.Object) error {
	if p, ok := obj.(*policies.Policy); ok {
		for _, w := range circuit.Lint(p) {
			a.logger.Warn("policy lint", "policy", p.Key().String(), "warning", w.Error())
		}
	}
	if err := a.circuits.Validate(obj); err != nil {
		return err
	}
	return a.engine.Validate(obj)
}

// Circuits is the agent's circuit runtime.
func (a *Agent) Circuits() *circuit.Runtime { return a.circuits }

// Engine is the agent's decision engine.
func (a *Agent) Engine() *controlpoint.Engine { return a.engine }

// Config is the configuration the agent was built with.
func (a *Agent) Config() Config { return a.cfg }

// FluxMeters is the flux meter processor: control points in the agent's
// process report flows to it directly (client.MiddlewareOptions.Flows).
func (a *Agent) FluxMeters() *fluxmeter.Processor { return a.meters }

// Store is the agent's policy store.
func (a *Agent) Store() *PolicyStore { return a.store }

// Health is the agent's health registry; other components register there.
func (a *Agent) Health() *Health { return a.health }

// Registry is the registry served on /metrics.
func (a *Agent) Registry() *prometheus.Registry { return a.registry }

// HandleHTTP mounts an operator handler on the HTTP API port, behind the
// admin token like the policy admin API: 403 while admin.token is empty,
// 401 without the token (auth.go). Call it before Start.
func (a *Agent) HandleHTTP(pattern string, h http.Handler) {
	a.mux.Handle(pattern, a.requireToken(pattern, h))
}

// GRPCServer is the server on the gRPC port; register services before Start.
func (a *Agent) GRPCServer() *grpc.Server { return a.grpc }

// Addr is the bound address of a listener (ListenerHTTP, ListenerGRPC,
// ListenerMetrics), or nil before Start or when it is disabled.
func (a *Agent) Addr(name string) net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addrs[name]
}

// Err delivers the first error a server hits after Start.
func (a *Agent) Err() <-chan error { return a.errc }

// Ready reports what /readyz reports.
func (a *Agent) Ready() bool { return a.ready.Load() && a.store.Loaded() && !a.stopping.Load() }

func (a *Agent) serveReady(w http.ResponseWriter, _ *http.Request) {
	if !a.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Start loads the policies, binds every listener and serves in the
// background. It fails, binding nothing and releasing what New opened, if
// any port cannot be bound.
func (a *Agent) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil { // release what New opened; a failed agent is not restarted
			for _, c := range append([]io.Closer{a.query}, a.closers...) {
				_ = c.Close()
			}
			a.grpc.Stop() // and the gRPC servers' stream workers
			a.otlpGRPC.Stop()
		}
	}()
	if err := a.store.Reload(); err != nil {
		return err
	}
	host := a.cfg.Server.Host
	lns := map[string]int{
		ListenerHTTP:     a.cfg.Server.HTTPPort,
		ListenerGRPC:     a.cfg.Server.GRPCPort,
		ListenerOTLPGRPC: a.cfg.OTLP.GRPCPort,
		ListenerOTLPHTTP: a.cfg.OTLP.HTTPPort,
	}
	if a.cfg.Metrics.Enabled {
		lns[ListenerMetrics] = a.cfg.Metrics.Port
	}
	if a.cfg.Server.ProbePort > 0 {
		lns[ListenerProbe] = a.cfg.Server.ProbePort
	}
	a.raiseOpenFilesLimit()
	limit := a.connectionCap(len(lns))
	bound := make(map[string]net.Listener, len(lns))
	raw := make(map[string]net.Listener, len(lns)) // the same, without their caps
	caps := make(map[string]*conncap.Cap, len(lns))
	for _, name := range listenerNames {
		port, ok := lns[name]
		if !ok {
			continue
		}
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			for _, l := range bound {
				_ = l.Close()
			}
			// Name the key that sets the port: "address already in use" is
			// answered by changing it (or the environment variable).
			return fmt.Errorf("agent: %s listener (%s): %w", name, listenerPortKeys[name], err)
		}
		caps[name] = a.listenerCap(name, limit)
		bound[name], raw[name] = caps[name].Listener(ln), ln
	}
	if err := errors.Join(a.newHTTPLoops(caps[ListenerHTTP]), a.newGRPCLoops(caps[ListenerGRPC])); err != nil {
		for _, l := range bound {
			_ = l.Close()
		}
		return err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	a.mu.Lock()
	a.cancel, a.runCtx = cancel, runCtx
	a.limits = caps
	for name, ln := range bound {
		a.addrs[name] = ln.Addr()
	}
	a.mu.Unlock()

	a.serveHTTPPort(raw[ListenerHTTP], bound[ListenerHTTP])
	a.serveGRPCPort(raw[ListenerGRPC], bound[ListenerGRPC])
	a.serve(ListenerOTLPGRPC, bound[ListenerOTLPGRPC], a.otlpGRPC.Serve)
	otlpMux := http.NewServeMux()
	otlpMux.Handle("/v1/traces", requireBearer(a.cfg.OTLP.Token, surfaceOTLP, a.refused, a.otlp))
	a.otlpHTTP = a.httpServer(otlpMux)
	a.serve(ListenerOTLPHTTP, a.tlsListener(ListenerOTLPHTTP, bound[ListenerOTLPHTTP], a.otlpHTTP), a.otlpHTTP.Serve)
	if ln := bound[ListenerMetrics]; ln != nil {
		mux := http.NewServeMux()
		mux.Handle(a.cfg.Metrics.Path, metricsHandler(a.registry, a.registry))
		a.metrics = a.httpServer(mux)
		a.serve(ListenerMetrics, a.tlsListener(ListenerMetrics, ln, a.metrics), a.metrics.Serve)
	}
	if ln := bound[ListenerProbe]; ln != nil {
		mux := http.NewServeMux()
		a.registerProbes(mux)
		a.probes = a.httpServer(mux)
		a.serve(ListenerProbe, ln, a.probes.Serve)
	}
	if a.certs != nil {
		a.goRun("certificate reloader", func(ctx context.Context) error { _ = a.certs.Run(ctx); return nil })
	}
	a.applyMemoryLimit()
	a.goRun("memory release", func(ctx context.Context) error { releaseIdleMemory(ctx, releaseEvery); return nil })
	a.goRun("decision engine", func(ctx context.Context) error { a.engine.Run(ctx); return nil })
	a.goRun("circuits", func(ctx context.Context) error { a.circuits.Run(ctx); return nil })
	a.goRun("live view", func(ctx context.Context) error { a.ui.Run(ctx); return nil })
	if a.alerts != nil {
		a.goRun("alerts", func(ctx context.Context) error { a.alerts.Run(ctx); return nil })
	}
	if a.tsdb != nil {
		a.goRun("embedded TSDB", a.tsdb.Run)
	}
	a.goRun("policy watcher", a.store.Run)
	if a.kube != nil {
		a.goRun("kubernetes watch", a.kube.Run)
	}
	if a.kubeStatus != nil {
		a.goRun("kubernetes status", a.kubeStatus.Run)
	}
	if a.targets != nil {
		a.goRun("kubernetes target discovery", a.targets.watcher.Run)
	}

	a.grpcHlth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	a.ready.Store(true)
	a.logSurfaces()
	a.logTLS()
	snap := a.store.Snapshot()
	a.logger.Info("agent started", "version", BuildVersion(), "policies", len(snap.Entries), "refused_policy_files", len(snap.Errors), "policies_dir", a.store.Dir())
	close(a.up)
	return nil
}

// Started is closed once Start has succeeded: the listeners are bound and
// the policies loaded.
func (a *Agent) Started() <-chan struct{} { return a.up }

func (a *Agent) serve(name string, ln net.Listener, serve func(net.Listener) error) {
	a.logger.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", a.tlsOn(name))
	a.goRun(name+" server", func(context.Context) error {
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	})
}

// goRun starts one long-lived part of the agent, run until ctx (Start's
// run context) ends; Stop waits for every part. A part's error ends the
// agent: the first reaches Err, and none is dropped — Run returns them
// all. Every goroutine Start begins goes through here, so nothing counts
// them by hand.
func (a *Agent) goRun(name string, run func(ctx context.Context) error) {
	a.mu.Lock()
	ctx := a.runCtx
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := run(ctx); err != nil {
			a.fail(fmt.Errorf("agent: %s: %w", name, err))
		}
	}()
}

// fail records a part's error; the first is also sent on Err.
func (a *Agent) fail(err error) {
	a.mu.Lock()
	a.runErrs = append(a.runErrs, err)
	first := len(a.runErrs) == 1
	a.mu.Unlock()
	if first {
		a.errc <- err // buffered for one: the first error only
	}
}

// Stop marks the agent not ready, lets in-flight requests finish (up to
// ShutdownTimeout or ctx, whichever ends first) and stops every goroutine
// Start began.
func (a *Agent) Stop(ctx context.Context) error {
	a.stopping.Store(true)
	a.grpcHlth.Shutdown()
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()

	var errs []error
	if a.httpLoops != nil { // it shuts a.httpSrv down too
		if err := a.httpLoops.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if a.grpcLoops != nil { // before grpc-go, which serves its calls handed over
		if err := a.grpcLoops.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range []*http.Server{a.httpSrv, a.metrics, a.otlpHTTP, a.probes} {
		if srv == nil || srv == a.httpSrv && a.httpLoops != nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = srv.Close()
		}
	}
	done := make(chan struct{})
	go func() { a.grpc.GracefulStop(); a.otlpGRPC.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		a.grpc.Stop()
		a.otlpGRPC.Stop()
		errs = append(errs, fmt.Errorf("agent: gRPC graceful stop: %w", ctx.Err()))
	}
	a.mu.Lock()
	if a.cancel != nil {
		a.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
	if a.certs != nil {
		a.certs.Close()
	}
	for _, c := range append([]io.Closer{a.query}, a.closers...) {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.logger.Info("agent stopped")
	return errors.Join(errs...)
}

// Run starts the agent, serves until ctx is done or a server fails, then
// stops gracefully. It returns nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case first := <-a.errc:
		a.logger.Error("agent part failed; stopping", "err", first)
	}
	stopErr := a.Stop(context.Background())
	a.mu.Lock()
	runErrs := append([]error(nil), a.runErrs...)
	a.mu.Unlock()
	return errors.Join(append(runErrs, stopErr)...)
}
