package agent

import (
	"net/http"

	"github.com/fluxgate/fluxgate/controlpoint/server"
)

// registerCheckAPI mounts the check API adapters over the agent's engine:
// POST /v1/check, GET|POST /v1/check/http (nginx auth_request),
// POST /v1/explain and GET /v1/controlpoints on the HTTP port;
// fluxgate.flowcontrol.v1.FlowControlService and Envoy's
// envoy.service.auth.v3.Authorization and
// envoy.service.accesslog.v3.AccessLogService (flow ends) on the gRPC
// port. Call it once, before Start.
//
// The checks are open while check.token is empty: gateways and SDKs ask
// on every request; with a token they must send it (auth.go). Explain
// and the control point list are operator endpoints behind the admin
// token (auth.go): explain shows every policy, classifier and limiter at a
// control point, the list shows which control points and label keys
// traffic carries.
func (a *Agent) registerCheckAPI() {
	s := server.New(server.Options{Engine: a.engine, Logger: a.logger, Registerer: a.registry, ApertureCacheBytes: int64(a.cfg.Limits.ApertureCacheMiB) << 20})
	s.RegisterHTTP(func(pattern string, h http.Handler) {
		if operatorCheckPatterns[pattern] {
			a.HandleHTTP(pattern, h)
			return
		}
		a.mux.Handle(pattern, requireBearer(a.cfg.Check.Token, surfaceCheck, a.refused, h))
	})
	s.RegisterGRPC(a.grpc)
	a.check = s
}

// operatorCheckPatterns are the patterns server.RegisterHTTP mounts that
// only operators may call; the others are the check API itself, which
// flows call (a flow-end call, say, when the server adds one).
var operatorCheckPatterns = map[string]bool{
	"POST /v1/explain":      true,
	"GET /v1/controlpoints": true,
}
