package agent

import "github.com/fluxgate/fluxgate/controlpoint/server"

// registerCheckAPI mounts the check API adapters over the agent's engine:
// POST /v1/check, GET|POST /v1/check/http (nginx auth_request),
// POST /v1/explain and GET /v1/controlpoints on the HTTP port;
// fluxgate.flowcontrol.v1.FlowControlService and Envoy's
// envoy.service.auth.v3.Authorization on the gRPC port. Call it once,
// before Start.
func (a *Agent) registerCheckAPI() {
	s := server.New(server.Options{Engine: a.engine, Logger: a.logger})
	s.RegisterHTTP(a.HandleHTTP)
	s.RegisterGRPC(a.grpc)
}
