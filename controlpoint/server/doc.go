// Package server exposes a controlpoint.Engine to the outside world. Every
// adapter turns its wire format into a controlpoint.Request, asks the one
// engine, and writes the engine's decision back in its own terms, so the
// same flow gets the same decision whichever way it arrives:
//
//   - gRPC fluxgate.flowcontrol.v1.FlowControlService/Check
//     (RegisterGRPC). A malformed request fails with InvalidArgument; a
//     caller whose deadline has already passed gets DeadlineExceeded.
//   - Envoy ext_authz v3 envoy.service.auth.v3.Authorization/Check
//     (RegisterGRPC). The control point is the "control-point" context
//     extension (default "ingress"). A rejection becomes a denied_response
//     with the HTTP status, Retry-After, RateLimit and X-FluxGate headers
//     and a JSON body; an admission becomes an ok_response that passes the
//     labels classifiers created downstream in the W3C baggage header.
//     A route whose flows' ends Envoy reports (the "flow-end: report"
//     context extension, or the X-FluxGate-Flow-End: report header) gets
//     the id of a flow that holds slots in the x-fluxgate-flow-id request
//     header; without that promise slot-holding components pass the flow.
//   - Envoy's access-log service envoy.service.accesslog.v3
//     AccessLogService/StreamAccessLogs (RegisterGRPC; accesslog.go), the
//     http_grpc access logger's server: a final entry whose request
//     headers carry x-fluxgate-flow-id ends that flow, failed for a 5xx
//     or no response, at the time Envoy logged rather than when the entry
//     arrived.
//   - FluxNinja Aperture's aperture.flowcontrol.check.v1
//     FlowControlService (Check, FlowEnd; aperture.go) and
//     aperture.flowcontrol.checkhttp.v1 FlowControlServiceHTTP/CheckHTTP
//     (aperturehttp.go), for Aperture's SDKs, middlewares and gateway
//     integrations (RegisterGRPC).
//   - HTTP JSON POST /v1/check (RegisterHTTP): the gRPC messages in
//     protojson with proto field names and enum names. 200 for any
//     decision, 400 with {"error": "..."} for malformed input, 413 for a
//     body over 1 MiB.
//   - nginx auth_request GET|POST /v1/check/http (RegisterHTTP): the
//     original request is described by the subrequest's headers plus
//     X-Original-URI, X-Original-Method, X-Original-Host (or the
//     X-Forwarded-Uri/-Method/-Host of other forward-auth proxies),
//     X-Forwarded-Proto and X-Real-IP / X-Forwarded-For. The control point
//     is X-FluxGate-Control-Point (default "ingress"). 200 admits; a
//     rejection answers flow.DeniedStatus (429, 403 or 503). Both
//     carry the decision headers for nginx to copy onto its response.
//   - POST /v1/explain and GET /v1/controlpoints (RegisterHTTP), which show
//     what the engine would decide and which control points it has seen.
//
// A Server is safe for concurrent use; its zero value is not usable, call
// New.
package server
