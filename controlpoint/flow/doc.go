// Package flow is the vocabulary that the agent, its adapters and the
// application SDK share about one flow, and nothing else: the flow labels
// of HTTP requests (HTTPLabels, after the OpenTelemetry semantic
// conventions), the decision headers HTTP adapters answer with
// (SetDecisionHeaders, DeniedStatus, ReasonLabel), the span attributes of
// a finished flow (Attr*) and the in-process record of one (Record). It
// imports only the check API's protobuf types, so the Go SDK
// (controlpoint/client) stays light. Everything here is safe for
// concurrent use.
package flow
