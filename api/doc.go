// Package api holds the JSON bodies of the agent's HTTP API that a client
// decodes: the admin API's policy list, a circuit's live signals, an
// explanation of a check and the control points seen. The agent encodes
// them and fluxctl decodes them, so the two agree on one definition.
//
// The package imports only the standard library, on purpose: a client
// that imports it links none of the server's dependencies (Prometheus,
// OPA, Redis, gRPC). The types are plain data; the zero value of each is
// an empty body. The check API's request and answer are not here: their
// shapes are the protobuf messages of controlpoint/controlpointpb.
package api
