package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/grpc"
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
//     gRPC, grpcBearer guards the check port's services but health, and
//     otlp.token the OTLP receiver the same way);
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
	if token == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusForbidden, errorBody{Error: errAdminDisabled, Message: adminDisabledMessage})
		})
	}
	c := newBearerCheck(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.match(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fluxgate"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errUnauthorized, Message: "missing or wrong admin token: send Authorization: Bearer <admin.token>"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireBearer guards a surface that is open while its token is empty:
// the check API (check.token) and the OTLP receiver (otlp.token), named
// by key in the refusal. With a token, a request without it answers 401
// with WWW-Authenticate: Bearer before its body is read.
func requireBearer(token, key string, next http.Handler) http.Handler {
	c := newBearerCheck(token)
	if c == nil {
		return next
	}
	msg := "missing or wrong token: send Authorization: Bearer <" + key + ">"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.match(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fluxgate"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errUnauthorized, Message: msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// grpcBearer is the gRPC form of requireBearer: a server option that
// refuses, with codes.Unauthenticated, every call without the token in
// its authorization metadata, but calls of the open services (gRPC
// health); none while token is empty. It is a tap handle, not an
// interceptor, so a refused call is answered before its message is read
// (16 MiB on OTLP) and streams are covered too.
func grpcBearer(token, key string, open ...string) []grpc.ServerOption {
	c := newBearerCheck(token)
	if c == nil {
		return nil
	}
	refused := status.Error(codes.Unauthenticated, "missing or wrong token: send metadata authorization: Bearer <"+key+">")
	return []grpc.ServerOption{grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
		service, _, _ := strings.Cut(strings.TrimPrefix(info.FullMethodName, "/"), "/")
		if slices.Contains(open, service) {
			return ctx, nil
		}
		var h string
		if v := info.Header.Get("authorization"); len(v) > 0 {
			h = v[0]
		}
		if !c.match(h) {
			return ctx, refused
		}
		return ctx, nil
	})}
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

// match reports whether the Authorization value h carries the token.
func (c *bearerCheck) match(h string) bool {
	got, ok := bearerToken(h)
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], c.want[:]) == 1 && ok
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
		"http", api, "metrics", addr(ListenerMetrics))
	open = a.withoutCertRequired(open) // tls.go: mutual TLS authenticates them
	if host := a.cfg.Server.Host; len(open) > 0 && (host == "" || net.ParseIP(strings.Trim(host, "[]")).IsUnspecified()) {
		a.logger.Warn("surfaces without authentication listen on every interface", "host", host,
			"surfaces", open,
			"hint", "anyone who reaches this host can use them (check: ask for decisions; otlp: send spans that feed flux meters and circuits; monitoring: read health and metrics); set check.token and otlp.token, bind server.host to a private address or restrict the ports with a network policy")
	}
}
