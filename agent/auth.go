package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// The HTTP API has three kinds of endpoints:
//
//   - check (POST /v1/check, /v1/check/http, and any other pattern of
//     controlpoint/server but explain and control points): open while
//     check.token is empty, as gateways and SDKs call it on every request;
//     with a token they send it as a bearer token (requireBearer; over
//     gRPC, the tap handle of grpcGuards guards the check port's
//     services but health, and otlp.token the OTLP receiver the same way);
//   - monitoring (/livez, /readyz, /v1/monitoring/…): open, for probes;
//   - operator (the policy admin API, dynamic config, signals, explain,
//     control points and whatever HandleHTTP mounts, such as the gateway's
//     upstream view): these change state or reveal configuration, so they answer only
//     requests that carry admin.token as a bearer token. While admin.token
//     is empty they are off: every call answers 403 admin_disabled.
//
// The guard is requireToken; the start-up log says which surface is open
// to whom (logSurfaces).

// Codes of the operator endpoints' refusals, in the "error" field.
const (
	errAdminDisabled = "admin_disabled"
	errUnauthorized  = "unauthorized"
)

// Surfaces and reasons of fluxgate_api_refused_total.
const (
	surfaceAdmin = "admin"
	surfaceCheck = "check"
	surfaceOTLP  = "otlp"

	reasonDisabled     = "disabled"      // admin endpoints off: admin.token is empty
	reasonMissingToken = "missing_token" // no Authorization, or not a bearer token
	reasonWrongToken   = "wrong_token"   // a bearer token that is not the configured one
)

// newRefusedCounter registers fluxgate_api_refused_total on reg, or
// returns the one registered there already; every surface and reason
// starts at 0.
func newRefusedCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fluxgate_api_refused_total",
		Help: "Calls the agent refused for want of authentication, by surface (admin, check, otlp) and reason (disabled: admin.token is empty; missing_token; wrong_token).",
	}, []string{"surface", "reason"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	c.WithLabelValues(surfaceAdmin, reasonDisabled)
	for _, s := range []string{surfaceAdmin, surfaceCheck, surfaceOTLP} {
		c.WithLabelValues(s, reasonMissingToken)
		c.WithLabelValues(s, reasonWrongToken)
	}
	return c, nil
}

// adminDisabledMessage tells the caller of an operator endpoint how to
// turn the endpoints on.
const adminDisabledMessage = "admin endpoints are off: set admin.token (FLUXGATE_ADMIN_TOKEN) on the agent and send Authorization: Bearer <token>"

// requireToken guards an operator endpoint: 403 admin_disabled while no
// admin token is configured, 401 with WWW-Authenticate: Bearer unless the
// request carries the token, next otherwise. The pattern is remembered for
// the start-up log.
func (a *Agent) requireToken(pattern string, next http.Handler) http.Handler {
	a.operator = append(a.operator, pattern)
	token := a.cfg.Admin.Token
	refused := a.refused
	if token == "" {
		disabled := refused.WithLabelValues(surfaceAdmin, reasonDisabled)
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			disabled.Inc()
			writeJSON(w, http.StatusForbidden, errorBody{Error: errAdminDisabled, Message: adminDisabledMessage})
		})
	}
	c := newBearerCheck(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := c.refusal(r.Header.Get("Authorization")); why != "" {
			refused.WithLabelValues(surfaceAdmin, why).Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="fluxgate"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errUnauthorized, Message: "missing or wrong admin token: send Authorization: Bearer <admin.token>"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireBearer guards a surface that is open while its token is empty:
// the check API (surface check, check.token) and the OTLP receiver
// (surface otlp, otlp.token). With a token, a request without it answers
// 401 with WWW-Authenticate: Bearer before its body is read, and counts
// in refused.
func requireBearer(token, surface string, refused *prometheus.CounterVec, next http.Handler) http.Handler {
	c := newBearerCheck(token)
	if c == nil {
		return next
	}
	msg := "missing or wrong token: send Authorization: Bearer <" + surface + ".token>"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := c.refusal(r.Header.Get("Authorization")); why != "" {
			refused.WithLabelValues(surface, why).Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="fluxgate"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errUnauthorized, Message: msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// chainTaps is one tap handle (a gRPC server has one) that runs taps in
// order, skipping nil ones; the first refusal ends the call.
func chainTaps(taps ...tap.ServerInHandle) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		for _, t := range taps {
			if t == nil {
				continue
			}
			var err error
			if ctx, err = t(ctx, info); err != nil {
				return ctx, err
			}
		}
		return ctx, nil
	}
}

// grpcGuard is the token a gRPC surface needs, and the surface's name.
type grpcGuard struct{ token, surface string }

// grpcGuards is the gRPC form of requireBearer: it refuses, with
// codes.Unauthenticated, every call without its token, for a server
// whose services need different tokens: the services in byService need
// theirs, the open ones (gRPC health) none, and every other one def's.
// A token travels as "authorization: Bearer <token>" or, as Aperture's
// SDKs send it, "x-api-key: <token>". It is nil when no service needs a
// token. Its tap handle runs before a call's message is read (16 MiB on
// OTLP) and covers streams too; a server on event loops calls refuse
// itself (agent/grpcloop.go).
type grpcGuards struct {
	refused *prometheus.CounterVec
	def     grpcRule
	rules   map[string]grpcRule
	open    []string
}

type grpcRule struct {
	check   *bearerCheck
	surface string
	refusal error
}

func newGRPCGuards(refused *prometheus.CounterVec, def grpcGuard, byService map[string]grpcGuard, open ...string) *grpcGuards {
	ruleOf := func(g grpcGuard) grpcRule {
		return grpcRule{newBearerCheck(g.token), g.surface, status.Error(codes.Unauthenticated, "missing or wrong token: send metadata authorization: Bearer <"+g.surface+".token>")}
	}
	gs := &grpcGuards{refused: refused, def: ruleOf(def), rules: make(map[string]grpcRule, len(byService)), open: open}
	guarded := gs.def.check != nil
	for svc, g := range byService {
		gs.rules[svc] = ruleOf(g)
		guarded = guarded || gs.rules[svc].check != nil
	}
	if !guarded {
		return nil
	}
	return gs
}

// refuse is the refusal of a call of method (a full method name) whose
// metadata field gives the first value of a field, nil when it may go
// on. A nil grpcGuards refuses nothing.
func (gs *grpcGuards) refuse(method string, field func(name string) string) error {
	if gs == nil {
		return nil
	}
	service, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if slices.Contains(gs.open, service) {
		return nil
	}
	r, ok := gs.rules[service]
	if !ok {
		r = gs.def
	}
	if r.check == nil {
		return nil
	}
	h := field("authorization")
	if h == "" {
		if v := field("x-api-key"); v != "" {
			h = "Bearer " + v
		}
	}
	if why := r.check.refusal(h); why != "" {
		gs.refused.WithLabelValues(r.surface, why).Inc()
		return r.refusal
	}
	return nil
}

// tap is refuse as a tap handle; nil when nothing is refused.
func (gs *grpcGuards) tap() tap.ServerInHandle {
	if gs == nil {
		return nil
	}
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		return ctx, gs.refuse(info.FullMethodName, func(name string) string {
			if v := info.Header.Get(name); len(v) > 0 {
				return v[0]
			}
			return ""
		})
	}
}

// bearerCheck compares the bearer token of Authorization values with one
// configured token. It compares SHA-256 digests in constant time, so that
// neither the token's bytes nor its length show in the time a comparison
// takes.
type bearerCheck struct{ want [sha256.Size]byte }

// newBearerCheck is nil when token is empty.
func newBearerCheck(token string) *bearerCheck {
	if token == "" {
		return nil
	}
	return &bearerCheck{want: sha256.Sum256([]byte(token))}
}

// refusal is why the Authorization value h does not carry the token
// (reasonMissingToken, reasonWrongToken), or "" when it does.
func (c *bearerCheck) refusal(h string) string {
	got, ok := bearerToken(h)
	sum := sha256.Sum256([]byte(got))
	switch {
	case !ok:
		return reasonMissingToken
	case subtle.ConstantTimeCompare(sum[:], c.want[:]) != 1:
		return reasonWrongToken
	}
	return ""
}

// bearerToken is the token of an Authorization header value of the Bearer
// scheme, whose name is case-insensitive (RFC 7235 section 2.1; RFC 6750).
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}

// logSurfaces logs, once at start, one line per surface of the agent
// saying what is open and to whom, and a warning when surfaces without
// authentication listen on every interface.
func (a *Agent) logSurfaces() {
	addr := func(name string) string {
		if ad := a.Addr(name); ad != nil {
			return ad.String()
		}
		return ""
	}
	api := addr(ListenerHTTP)
	if a.cfg.Admin.Token == "" {
		a.logger.Info("admin API disabled: admin.token is empty", "surface", "admin", "open_to", "nobody",
			"addr", api, "endpoints", a.operator, "answer", "403 admin_disabled",
			"enable", "set admin.token (FLUXGATE_ADMIN_TOKEN); clients send Authorization: Bearer <token> (fluxctl --token or FLUXCTL_TOKEN)")
	} else {
		a.logger.Info("admin API enabled (bearer token)", "surface", "admin", "open_to", "holders of admin.token",
			"addr", api, "endpoints", a.operator)
		scheme := "http://"
		if a.tlsOn(ListenerHTTP) {
			scheme = "https://"
		}
		a.logger.Info("live view: the page loads without a token, its data needs admin.token", "surface", "ui",
			"open_to", "holders of admin.token", "url", scheme+api+"/ui/")
	}
	var open []string // surfaces without authentication
	if a.cfg.Check.Token == "" {
		a.logger.Info("check API open without authentication", "surface", "check", "open_to", "anyone who reaches the ports",
			"http", api, "grpc", addr(ListenerGRPC), "protect", "set check.token (FLUXGATE_CHECK_TOKEN); clients send Authorization: Bearer <token>")
		open = append(open, "check")
	} else {
		a.logger.Info("check API: token required (check.token)", "surface", "check", "open_to", "holders of check.token",
			"http", api, "grpc", addr(ListenerGRPC))
	}
	if a.cfg.OTLP.Token == "" {
		a.logger.Info("OTLP receiver open without authentication", "surface", "otlp", "open_to", "anyone who reaches the ports",
			"grpc", addr(ListenerOTLPGRPC), "http", addr(ListenerOTLPHTTP), "protect", "set otlp.token (FLUXGATE_OTLP_TOKEN); exporters send Authorization: Bearer <token>")
		open = append(open, "otlp")
	} else {
		a.logger.Info("OTLP receiver: token required (otlp.token)", "surface", "otlp", "open_to", "holders of otlp.token",
			"grpc", addr(ListenerOTLPGRPC), "http", addr(ListenerOTLPHTTP))
	}
	open = append(open, "monitoring")
	a.logger.Info("health and metrics open without authentication", "surface", "monitoring", "open_to", "anyone who reaches the ports",
		"http", api, "metrics", addr(ListenerMetrics), "probe", addr(ListenerProbe))
	open = a.withoutCertRequired(open) // tls.go: mutual TLS authenticates them
	if host := a.cfg.Server.Host; len(open) > 0 && (host == "" || net.ParseIP(strings.Trim(host, "[]")).IsUnspecified()) {
		a.logger.Warn("surfaces without authentication listen on every interface", "host", host,
			"surfaces", open,
			"hint", "anyone who reaches this host can use them (check: ask for decisions; otlp: send spans that feed flux meters and circuits; monitoring: read health and metrics); set check.token and otlp.token, bind server.host to a private address or restrict the ports with a network policy")
	}
}
