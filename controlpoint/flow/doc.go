// Package flow is the vocabulary that the agent, its adapters and the
// application SDK share about one flow, and nothing else: a check's
// Request and its Decision (the one shape of a decision inside a process:
// the engine writes it, the SDK's checkers fill it, adapters read it;
// ToProto and FromProto are its form on the check API's wire), the flow
// labels of HTTP requests (HTTPLabels, after the OpenTelemetry semantic
// conventions), the decision headers HTTP adapters answer with
// (SetDecisionHeaders, DeniedStatus, ReasonLabel), the span attributes of
// a finished flow (Attr*) and the in-process record of one (Record). It
// imports only the check API's protobuf types, so the Go SDK
// (controlpoint/client) stays light. The functions are safe for
// concurrent use; a Decision is one caller's at a time.
package flow
