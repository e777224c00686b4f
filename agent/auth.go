package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

// The HTTP API has three kinds of endpoints:
//
//   - check (POST /v1/check, /v1/check/http, and any other pattern of
//     controlpoint/server but explain and control points): open, as
//     gateways and SDKs call it on every request;
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
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		// Compare digests, so that neither the token's bytes nor its
		// length show in the time the comparison takes.
		if sum := sha256.Sum256([]byte(got)); !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fluxgate"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: errUnauthorized, Message: "missing or wrong admin token: send Authorization: Bearer <admin.token>"})
			return
		}
		next.ServeHTTP(w, r)
	})
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
	a.logger.Info("check API open without authentication", "surface", "check", "open_to", "anyone who reaches the ports",
		"http", api, "grpc", addr(ListenerGRPC))
	a.logger.Info("OTLP receiver open without authentication", "surface", "otlp", "open_to", "anyone who reaches the ports",
		"grpc", addr(ListenerOTLPGRPC), "http", addr(ListenerOTLPHTTP))
	a.logger.Info("health and metrics open without authentication", "surface", "monitoring", "open_to", "anyone who reaches the ports",
		"http", api, "metrics", addr(ListenerMetrics))
	if host := a.cfg.Server.Host; host == "" || net.ParseIP(strings.Trim(host, "[]")).IsUnspecified() {
		a.logger.Warn("surfaces without authentication listen on every interface", "host", host,
			"surfaces", []string{"check", "otlp", "monitoring"},
			"hint", "anyone who reaches this host can ask for decisions and send spans that feed flux meters and circuits; bind server.host to a private address or restrict the ports with a network policy")
	}
}
