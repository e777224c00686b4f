package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/policies"
)

// Options configures New.
type Options struct {
	// Config is the gateway section of fluxgate.yaml.
	Config Config
	// Checker decides at each route's control point; use
	// controlpoint.NewLocalChecker(agent.Engine()). Nil admits every request.
	Checker client.Checker
	// Tracer receives a flow span per checked request (see
	// client.MiddlewareOptions.Tracer). Nil records none.
	Tracer trace.Tracer
	// Flows receives a flux meter flow per checked request in process, in
	// place of a span (see client.MiddlewareOptions.Flows): the agent's
	// flux meter processor when the gateway runs in the agent.
	Flows client.FlowObserver
	// Registerer receives the gateway and breaker metrics. Nil means none.
	Registerer prometheus.Registerer
	// Logger receives health, outlier and breaker transitions. Nil means silent.
	Logger *slog.Logger
	// DialTimeout bounds connecting to a target. Default 2s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a target's response
	// headers after the request is sent. Default 30s.
	ResponseHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading a client's request body once its
	// headers are in, on both engines: long enough for any upload a proxy
	// should carry, short enough that a stalled client does not hold its
	// connection and its target's slot forever. A client past it gets 408.
	// Default 1h.
	BodyReadTimeout time.Duration
	// UpstreamTLSConfig is the client config for upstreams with tls:
	// true (root CAs, client certificates). Nil means the system roots.
	UpstreamTLSConfig *tls.Config
}

// Gateway is the built-in reverse proxy: an http.Handler that routes each
// request, checks it at its route's control point, picks an upstream
// group (canary or primary), passes the group's breaker and proxies to a
// target chosen by the group's balancer. Run runs the health checks.
//
// Routing state is an immutable snapshot behind an atomic pointer: Update
// swaps it, requests in flight finish on the snapshot they started with,
// and targets and breakers whose group and address are unchanged keep
// their state. A Gateway is safe for concurrent use.
type Gateway struct {
	opts         Options
	logger       *slog.Logger
	metrics      *metrics
	breakers     *breaker.PrometheusListener
	dialer       *net.Dialer
	transports   transports
	fast         fastClients
	lean         clientSet[*leanPool]
	healthClient *http.Client
	proxy        *httputil.ReverseProxy
	adapted      fasthttp.RequestHandler // the net/http engine behind the fast one
	conns        *conncap.Cap            // the client connections under gateway.max_connections

	state   atomic.Pointer[snapshot]
	mu      sync.Mutex                // serializes Update; guards targets
	targets map[string][]TargetConfig // SetUpstreamTargets: replaces the groups' configured targets
	changed chan struct{}             // tells Run that the snapshot changed; cap 1

	loopMu      sync.Mutex
	loopServers map[*LoopServer]struct{} // guarded by loopMu: the loop engine's servers serving (told of each Update)
}

// snapshot is the routing state of one configuration.
type snapshot struct {
	cfg       Config
	routes    []*route
	upstreams map[string]*upstream
}

// route is one configured route with its control point handler.
type route struct {
	id    string
	match RouteMatch
	// controlPoint is where requests are checked, when the gateway has a
	// checker: gate checks and records them, on every engine (nil
	// without a checker).
	controlPoint string
	gate         *client.Gate
	series       *routeSeries
	// fast: the fast engine proxies this route itself, as its groups
	// speak HTTP/1.1 to their targets.
	fast    bool
	primary *upstream
	canary  *upstream // nil: no canary
	ccfg    CanaryConfig
	cs      *canaryState  // weight and verdict; nil without canary
	n       atomic.Uint64 // requests counted for the canary split
}

// New builds a Gateway for opts.Config. It binds nothing: serve it with an
// http.Server and call Run for health checks.
func New(opts Options) (*Gateway, error) {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = 30 * time.Second
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = time.Hour
	}
	g := &Gateway{opts: opts, logger: opts.Logger, changed: make(chan struct{}, 1)}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	g.metrics = m
	conns, collectors := newConnCap(opts.Config.MaxConnections, g.logger)
	g.conns = conns
	if opts.Registerer != nil {
		for _, c := range collectors {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("gateway: register connection metrics: %w", err)
			}
		}
	}
	if g.breakers, err = breaker.NewPrometheusListener(opts.Registerer); err != nil {
		return nil, fmt.Errorf("gateway: register breaker metrics: %w", err)
	}
	g.dialer = &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	g.transports = newTransports(opts, func(ctx context.Context, network, addr string) (net.Conn, error) {
		return g.dialUpstream(ctx, network, addr, 0, nil) // http.Transport has its ResponseHeaderTimeout and TLS
	})
	g.healthClient = &http.Client{
		Transport: &http.Transport{
			DialContext: g.dialer.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute,
			TLSClientConfig: opts.UpstreamTLSConfig.Clone(),
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    (*retryTransport)(g),
		ErrorHandler: g.proxyError,
		BufferPool:   copyBuffers,
	}
	g.adapted = fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.ServeHTTP(w, detach(r))
	}))
	g.state.Store(&snapshot{upstreams: map[string]*upstream{}})
	if err := g.Update(opts.Config); err != nil {
		return nil, err
	}
	return g, nil
}

// Update validates cfg and swaps in its routing state. Targets (by group
// name and address) keep their health, latency and in-flight state;
// breakers of groups whose breaker config is unchanged keep their state.
// Series of targets, groups and routes that went away are deleted. On
// error the current state keeps running.
func (g *Gateway) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.updateLocked(cfg)
}

// SetUpstreamTargets replaces the targets of the named upstream groups
// with those given, until the next call: targets discovered at run time
// (a TrafficPolicy's targetRef resolved through Kubernetes EndpointSlices,
// package kube) instead of the config's. An empty list leaves a group
// without targets (its requests get 503); a group not named keeps its
// configured targets, and a name no group has is ignored. Targets whose
// address stays keep their health and load state. Every later Update
// applies the replacement too.
func (g *Gateway) SetUpstreamTargets(targets map[string][]TargetConfig) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.targets = targets
	return g.updateLocked(g.state.Load().cfg)
}

func (g *Gateway) updateLocked(cfg Config) error {
	old := g.state.Load()
	s := &snapshot{cfg: cfg, upstreams: make(map[string]*upstream, len(cfg.Upstreams))}
	keepFast := map[fastKey]bool{}
	for _, uc := range cfg.Upstreams {
		u, err := g.buildUpstream(old, uc, keepFast)
		if err != nil {
			return err
		}
		s.upstreams[uc.Name] = u
	}
	for _, rc := range cfg.Routes {
		s.routes = append(s.routes, g.buildRoute(old, s, rc))
	}
	g.state.Store(s)
	g.fast.keepOnly(keepFast)
	g.lean.keepOnly(keepFast)
	g.loopsKeepOnly(keepFast)
	select {
	case g.changed <- struct{}{}:
	default:
	}
	g.forgetRemoved(old, s)
	for _, u := range s.upstreams {
		g.metrics.reportUpstream(u, time.Now())
	}
	return nil
}

// buildUpstream builds upstream uc for a new snapshot. Targets at an
// address the old snapshot had keep their state, and so does the breaker
// while its configuration is the same; keepFast collects the fasthttp
// clients the upstream uses.
func (g *Gateway) buildUpstream(old *snapshot, uc UpstreamConfig, keepFast map[fastKey]bool) (*upstream, error) {
	if ts, ok := g.targets[uc.Name]; ok {
		uc.Targets = ts
	}
	prev := old.upstreams[uc.Name]
	targets := make(map[string]*target)
	if prev != nil {
		for _, t := range prev.targets {
			targets[t.addr] = t
		}
	}
	u := newUpstream(uc, targets)
	u.transport, u.scheme = g.transports.forUpstream(uc)
	if !uc.HTTP2 {
		u.fast = make(map[string]*fasthttp.HostClient, len(u.targets))
		u.lean = make(map[string]*leanPool, len(u.targets))
		for _, t := range u.targets {
			k := fastKey{addr: t.addr, tls: uc.TLS}
			u.fast[t.addr] = g.fast.get(k, g.newFastClient)
			u.lean[t.addr] = g.lean.get(k, g.newLeanPool)
			keepFast[k] = true
		}
		u.transport = &leanTransport{u: u, fallback: u.transport}
	}
	if uc.CircuitBreaker != nil {
		if prev != nil && prev.breaker != nil && breakerConfigEqual(old.cfg, uc) {
			u.breaker = prev.breaker
		} else {
			b, err := g.newBreaker(uc)
			if err != nil {
				return nil, fmt.Errorf("gateway: upstream %q: %w", uc.Name, err)
			}
			u.breaker = b
		}
	}
	return u, nil
}

// buildRoute builds route rc over the upstreams of s, the new snapshot.
func (g *Gateway) buildRoute(old, s *snapshot, rc RouteConfig) *route {
	r := &route{id: rc.ID, match: rc.Match, primary: s.upstreams[rc.Upstream], controlPoint: rc.ControlPoint,
		series: newRouteSeries(g.metrics, rc.ID)}
	if r.controlPoint == "" {
		r.controlPoint = client.DefaultControlPoint
	}
	if rc.Canary != nil {
		r.canary = s.upstreams[rc.Canary.Upstream]
		r.ccfg = *rc.Canary
		// The canary keeps its weight, rollback and samples while
		// the route sends it to the same upstream.
		if p := old.routeByID(rc.ID); p != nil && p.cs != nil && p.ccfg.Upstream == rc.Canary.Upstream {
			r.cs = p.cs
		} else {
			r.cs = newCanaryState(rc.ID, g.logger, g.metrics)
		}
		r.cs.configure(*rc.Canary, g.metrics)
	}
	r.fast = r.primary.fast != nil && (r.canary == nil || r.canary.fast != nil)
	if g.opts.Checker != nil {
		r.gate = client.NewGate(g.opts.Checker, client.MiddlewareOptions{
			ControlPoint: r.controlPoint,
			Tracer:       g.opts.Tracer,
			Flows:        g.opts.Flows,
		})
	}
	return r
}

// forgetRemoved drops the series and breakers of the targets, upstreams,
// routes and canaries that old had and s has not.
func (g *Gateway) forgetRemoved(old, s *snapshot) {
	for name, pu := range old.upstreams {
		nu := s.upstreams[name]
		for _, t := range pu.targets {
			if nu == nil || !containsTarget(nu.targets, t) {
				g.metrics.forgetTarget(name, t.addr)
			}
		}
		if pu.breaker != nil && (nu == nil || nu.breaker == nil) {
			g.breakers.Forget(name)
		}
	}
	for _, r := range old.routes {
		nr := s.routeByID(r.id)
		if nr == nil {
			g.metrics.forgetRoute(r.id)
		}
		if r.cs != nil && (nr == nil || nr.cs == nil) {
			g.metrics.forgetCanary(r.id)
		}
	}
}

// LabelRouteID is the flow label that carries the route's id to the
// control point, so selectors can match routes.
const LabelRouteID = "route_id"

func containsTarget(ts []*target, t *target) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

func (s *snapshot) routeByID(id string) *route {
	for _, r := range s.routes {
		if r.id == id {
			return r
		}
	}
	return nil
}

func breakerConfigEqual(old Config, uc UpstreamConfig) bool {
	for _, o := range old.Upstreams {
		if o.Name == uc.Name && o.CircuitBreaker != nil {
			return *o.CircuitBreaker == *uc.CircuitBreaker
		}
	}
	return false
}

func (g *Gateway) newBreaker(uc UpstreamConfig) (*breaker.Breaker, error) {
	c := uc.CircuitBreaker
	return breaker.New(breaker.Options{
		Name: uc.Name,
		Config: breaker.Config{
			ErrorRate: c.ErrorRate, MinRequests: c.MinRequests, Window: c.Window,
			OpenFor: c.OpenFor, HalfOpenProbes: c.HalfOpenProbes,
		},
		Listeners: []breaker.Listener{g.breakers, logListener{g.logger}},
	})
}

// logListener logs every breaker transition with its cause.
type logListener struct{ logger *slog.Logger }

func (l logListener) OnTransition(name string, from, to breaker.State, reason string) {
	l.logger.Warn("circuit breaker transition", "upstream", name, "from", from.String(), "to", to.String(), "reason", reason)
}

// Run runs the active health checks and outlier detection of every
// upstream group until ctx is done, following Update.
func (g *Gateway) Run(ctx context.Context) error {
	for {
		s := g.state.Load()
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, u := range s.upstreams {
			wg.Go(func() { g.runUpstream(cctx, u) })
		}
		wg.Go(func() { g.runCanaries(cctx, s) })
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			return nil
		case <-g.changed:
			cancel()
			wg.Wait()
		}
	}
}

// Close releases idle upstream connections.
func (g *Gateway) Close() {
	g.transports.closeIdle()
	g.fast.closeIdle()
	g.lean.closeIdle()
	g.healthClient.CloseIdleConnections()
}

// ServeHTTP routes r, checks it at the route's control point and, if
// admitted, proxies it. The flow (proxied) goes down as an argument, not
// in a copy of r with a new context: the direct path copies r nowhere.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 && !httpguts.ValidHostHeader(r.Host) {
		// net/http's HTTP/2 server does not check :authority as its
		// HTTP/1 server checks Host (400): the target would get no Host
		// (net/http's Transport drops an invalid one) while the gateway
		// routed and checked this one.
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_host"})
		return
	}
	s := g.state.Load()
	rt := s.route(netRequest{r})
	if rt == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no_route"})
		return
	}
	// One reading of the clock when the request starts, for every stamp
	// up to the first wait (the admission's check and the flow's start,
	// the breaker's check, the first attempt's start), and one when the
	// answer has ended (the flow's end and the request's duration).
	start := time.Now()
	now := start
	inflight := rt.series.started(r.Method)
	fl := &proxied{route: rt, in: r}
	fl.rec.ResponseWriter = w
	var admitted client.Admitted
	// Deferred: a body that fails mid-way ends the handler with an
	// http.ErrAbortHandler panic, which is counted all the same (as
	// client.Middleware counts it: 500 when nothing was answered).
	returned := false
	defer func() {
		inflight.Dec()
		status := fl.rec.Status
		if status == 0 {
			status = http.StatusOK
			if !returned {
				status = http.StatusInternalServerError
			}
		}
		end := time.Now() // one reading for the flow's end and the request's
		admitted.EndAt(end, status, false)
		hostLabel := ""
		if host := fl.host.Load(); host != nil {
			hostLabel = *host
		}
		rt.series.finished(hostLabel, r.Method, status, end.Sub(start))
	}()
	if rt.gate != nil {
		labels := netLabels(r, rt)
		var ok bool
		admitted, ok, now = g.admitAt(r.Context(), rt, start, (*netExchange)(fl), labels)
		flow.FreeLabels(labels)
		if !ok {
			returned = true
			return
		}
		fl.rec.decision = admitted.Decision()
	}
	g.forward(rt, &fl.rec, r, fl, now)
	returned = true
}

// admitAt checks the request x at rt's control point at now, the clock's
// reading when it started, as the loop engine does: a check decided
// without waiting, or that never waits, is at now and the flow starts at
// now, which stays good for the stamps that follow (after). A check that
// may wait reads the clock, and the caller reads it afresh after (zero).
func (g *Gateway) admitAt(ctx context.Context, rt *route, now time.Time, x client.Exchange, labels map[string]string) (a client.Admitted, ok bool, after time.Time) {
	if a, ok, decided := rt.gate.TryAdmitAt(ctx, now, x, labels, 0); decided {
		return a, ok, now
	}
	if !rt.gate.Tries() && !g.checkMayWait(rt.controlPoint) {
		a, ok = rt.gate.AdmitAt(ctx, now, x, labels, 0)
		return a, ok, now
	}
	a, ok = rt.gate.Admit(ctx, x, labels, 0)
	return a, ok, time.Time{}
}

// route returns the first route that matches r, or nil.
func (s *snapshot) route(r request) *route {
	for _, rt := range s.routes {
		if rt.matches(r) {
			return rt
		}
	}
	return nil
}

func (rt *route) matches(r request) bool {
	m := rt.match
	if m.PathPrefix != "" && !strings.HasPrefix(r.path(), m.PathPrefix) {
		return false
	}
	if m.Host != "" && !strings.EqualFold(hostOnly(r.host()), m.Host) {
		return false
	}
	for k, v := range m.Headers {
		if r.header(k) != v {
			return false
		}
	}
	return true
}

// choose returns the upstream group for r: the canary when a match forces
// it or the split sends r there, else the primary.
func (rt *route) choose(r request) *upstream {
	if rt.canary == nil {
		return rt.primary
	}
	for _, m := range rt.ccfg.Match {
		if m.Header != nil && r.header(m.Header.Name) == m.Header.Value {
			return rt.canary
		}
		if m.Cookie != nil {
			if v, ok := r.cookie(m.Cookie.Name); ok && v == m.Cookie.Value {
				return rt.canary
			}
		}
	}
	w := rt.cs.weight.Load()
	switch {
	case w <= 0:
		return rt.primary
	case w >= 100:
		return rt.canary
	}
	if rt.ccfg.Sticky {
		h := fnv.New32a()
		_, _ = h.Write([]byte(clientKey(r)))
		if int64(h.Sum32()%100) < w {
			return rt.canary
		}
		return rt.primary
	}
	// Exact proportions: request n goes to the canary when floor(n·w/100)
	// steps up.
	n := rt.n.Add(1)
	if (n*uint64(w))/100 != ((n-1)*uint64(w))/100 {
		return rt.canary
	}
	return rt.primary
}

// clientKey identifies a client for sticky canaries.
func clientKey(r request) string {
	if id := r.header("X-Client-Id"); id != "" {
		return id
	}
	return hostOnly(r.remoteAddr())
}

// SetCanaryWeight sets the canary percentage of a route, as the
// flow_control.canary actuator does, over the configured weight until
// SetCanaryWeightSignal(NaN). While the canary is rolled back, a weight
// above 0 waits for the rollback to lift and 0 lifts it (see canaryState).
func (g *Gateway) SetCanaryWeight(routeID string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("gateway: canary weight must be 0..100, got %d", percent)
	}
	return g.SetCanaryWeightSignal(routeID, float64(percent))
}

// SetCanaryWeightSignal is the flow_control.canary actuator's input: a
// percentage, rounded; NaN or a value outside 0..100 (an invalid signal)
// returns the route to its configured weight.
func (g *Gateway) SetCanaryWeightSignal(routeID string, value float64) error {
	if r := g.state.Load().routeByID(routeID); r != nil && r.cs != nil {
		r.cs.setSignal(value)
		return nil
	}
	return fmt.Errorf("gateway: no route %q with a canary", routeID)
}

// runCanaries judges the canaries of s every canaryTick until ctx is done.
func (g *Gateway) runCanaries(ctx context.Context, s *snapshot) {
	t := time.NewTicker(canaryTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, r := range s.routes {
				if r.cs != nil {
					r.cs.step(now)
				}
			}
		}
	}
}

// Canaries reports the canary of every route that has one, in config order.
func (g *Gateway) Canaries() []CanaryStatus {
	var out []CanaryStatus
	for _, r := range g.state.Load().routes {
		if r.cs != nil {
			out = append(out, r.cs.status(r.canary.name))
		}
	}
	return out
}

// SetTargetWeight sets the weight of one target over its configured one,
// as the flow_control.upstream_weight actuator does, until
// SetTargetWeightSignal(NaN). It survives Update while the target stays.
func (g *Gateway) SetTargetWeight(upstreamName, addr string, weight int) error {
	if weight < 0 {
		return fmt.Errorf("gateway: weight must not be negative, got %d", weight)
	}
	return g.SetTargetWeightSignal(upstreamName, addr, float64(weight))
}

// SetTargetWeightSignal is the flow_control.upstream_weight actuator's
// input: a weight, rounded; NaN, ±Inf or a negative value (an invalid
// signal) returns the target to its configured weight.
func (g *Gateway) SetTargetWeightSignal(upstreamName, addr string, value float64) error {
	u := g.state.Load().upstreams[upstreamName]
	if u == nil {
		return fmt.Errorf("gateway: no upstream %q", upstreamName)
	}
	for _, t := range u.targets {
		if t.addr == addr {
			w := int64(-1)
			if !math.IsNaN(value) && !math.IsInf(value, 0) && value >= 0 {
				w = int64(math.Round(min(value, 1e9)))
			}
			t.setOverride(w)
			return nil
		}
	}
	return fmt.Errorf("gateway: upstream %q has no target %q", upstreamName, addr)
}

// SetActuatorInput sets the circuit input of a flow_control.canary or
// flow_control.upstream_weight component (the host's circuits call it).
func (g *Gateway) SetActuatorInput(spec policies.GatewayActuator, port string, value float64) error {
	if port != "weight" {
		return fmt.Errorf("gateway: %T has no input port %q", spec, port)
	}
	switch s := spec.(type) {
	case *policies.CanaryActuator:
		return g.SetCanaryWeightSignal(s.RouteID, value)
	case *policies.UpstreamWeight:
		return g.SetTargetWeightSignal(s.Upstream, s.Target, value)
	}
	return fmt.Errorf("gateway: unknown actuator %T", spec)
}

// TargetStatus is the state of one target.
type TargetStatus struct {
	Address         string  `json:"address"`
	Weight          int     `json:"weight"`
	EffectiveWeight float64 `json:"effective_weight"`
	Healthy         bool    `json:"healthy"` // by active checks
	Ejected         bool    `json:"ejected"` // by outlier detection
	InFlight        int64   `json:"in_flight"`
}

// UpstreamStatus is the state of one upstream group.
type UpstreamStatus struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	// HealthCheckInterval is 0 without active health checks.
	HealthCheckInterval time.Duration  `json:"health_check_interval,omitempty"`
	UnhealthyThreshold  int            `json:"unhealthy_threshold,omitempty"`
	Breaker             string         `json:"breaker,omitempty"` // closed, open, half_open; empty without one
	Targets             []TargetStatus `json:"targets"`
}

// Status reports every upstream group at now, in config order.
func (g *Gateway) Status(now time.Time) []UpstreamStatus {
	s := g.state.Load()
	var out []UpstreamStatus
	for _, uc := range s.cfg.Upstreams {
		u := s.upstreams[uc.Name]
		us := UpstreamStatus{Name: u.name, Algorithm: u.algorithm}
		if u.health != nil {
			us.HealthCheckInterval, us.UnhealthyThreshold = u.health.Interval, u.health.UnhealthyThreshold
		}
		if u.breaker != nil {
			us.Breaker = u.breaker.State().String()
		}
		for _, t := range u.targets {
			us.Targets = append(us.Targets, TargetStatus{
				Address: t.addr, Weight: int(t.weight.Load()), EffectiveWeight: t.effectiveWeight(),
				Healthy: t.healthy.Load(), Ejected: now.UnixNano() < t.ejected.Load(), InFlight: t.inFlight.Load(),
			})
		}
		out = append(out, us)
	}
	return out
}

// ServeStatus answers with Status as JSON; the gateway command mounts it
// on the agent's HTTP API as /v1/gateway/upstreams.
func (g *Gateway) ServeStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"upstreams": g.Status(time.Now()), "canaries": g.Canaries()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone
}

// setReason explains a gateway rejection like a control point's.
func setReason(h flow.HeaderSetter, reason string) {
	h.Set(flow.HeaderDecision, "rejected")
	h.Set(flow.HeaderReason, reason)
}

// checkMayWait reports whether a check at the control point cp may wait
// (see controlpoint.Engine.MayWait); a Checker that does not say may.
func (g *Gateway) checkMayWait(cp string) bool {
	mw, ok := g.opts.Checker.(interface{ MayWait(string) bool })
	return !ok || mw.MayWait(cp)
}
