package server

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fluxgate/fluxgate/controlpoint"
	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Flow labels and metadata of Aperture's HTTP check beyond FluxGate's HTTP
// labels (flow.HTTPLabels).
const (
	// LabelHTTPFlavor is the protocol version: "1.0", "1.1", "2.0".
	LabelHTTPFlavor = "http.flavor"
	// LabelHTTPRequestContentLength is the body size in bytes (-1:
	// unknown), as the caller gave it.
	LabelHTTPRequestContentLength = "http.request_content_length"
	// labelControlPointType is the telemetry label Aperture gives an HTTP
	// check's flows.
	labelControlPointType = "aperture.control_point_type"
	// metadataCheckResponse is the dynamic metadata key of the check
	// response (protobuf, base64), which Aperture's gateway integrations
	// put in the flow's span.
	metadataCheckResponse = "aperture.check_response"
)

// apertureHTTP is Aperture's aperture.flowcontrol.checkhttp.v1
// FlowControlServiceHTTP, which its gateway integrations (nginx, Kong,
// Envoy-less proxies) and HTTP middlewares call for each request. A
// request becomes a flow as any HTTP adapter's does:
//
//   - labels from the HTTP attributes (flow.HTTPLabels: method, path and
//     query, host, scheme and every header as http.request.header.*, in
//     the current and the older OpenTelemetry names, and the entries of a
//     baggage header), plus http.flavor and http.request_content_length
//     as Aperture sets them, and the source address as client.address and
//     source.address. The body is not read. FluxGate has no service
//     discovery: the destination address names no service; a flow's
//     service label comes from baggage (service=checkout), as for every
//     adapter;
//   - control_point is required (InvalidArgument without it), ramp_mode
//     and expect_end mean what they mean in Check.
//
// The answer is Aperture's: status OK and ok_response (headers to set on
// the upstream request: a baggage header carrying the labels classifiers
// created) for an admitted flow, or status UNAVAILABLE and
// denied_response (the HTTP status of the component that rejected, a
// retry-after header when it says when to retry, and FluxGate's decision
// headers) for a rejected one; check_response is Check's answer, also in
// dynamic_metadata under "aperture.check_response" as base64 protobuf.
type apertureHTTP struct {
	ap.UnimplementedFlowControlServiceHTTPServer
	s *Server
}

var _ ap.FlowControlServiceHTTPServer = apertureHTTP{}

// CheckHTTP decides one HTTP request.
func (a apertureHTTP) CheckHTTP(ctx context.Context, in *ap.CheckHTTPRequest) (*ap.CheckHTTPResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if in.GetControlPoint() == "" {
		return nil, status.Error(codes.InvalidArgument, "fluxgate: control_point is required")
	}
	hr := in.GetRequest()
	header := make(http.Header, len(hr.GetHeaders()))
	for k, v := range hr.GetHeaders() {
		if k == "" || k[0] == ':' { // HTTP/2 pseudo-headers are in the fields
			continue
		}
		header.Add(k, v)
	}
	labels := flow.HTTPLabels(hr.GetMethod(), hr.GetPath(), hr.GetHost(), hr.GetScheme(), header)
	labels[LabelHTTPFlavor] = httpFlavor(hr.GetProtocol())
	labels[LabelHTTPRequestContentLength] = strconv.FormatInt(hr.GetSize(), 10)
	if addr := in.GetSource().GetAddress(); addr != "" {
		flow.SetClientAddress(labels, addr)
	}
	req := controlpoint.Request{ControlPoint: in.GetControlPoint(), Labels: labels,
		NoFlowEnd: !in.GetExpectEnd(), RampMode: in.GetRampMode()}
	start := a.s.now()
	d := a.s.pool.Get().(*controlpoint.Decision)
	defer a.s.pool.Put(d)
	a.s.engine.Check(ctx, start, &req, d)
	cr := apertureResponse(d, req.Labels, start, a.s.now())
	cr.TelemetryFlowLabels[labelControlPointType] = "http"

	out := &ap.CheckHTTPResponse{CheckResponse: cr}
	if d.Accepted {
		ok := &ap.OkHttpResponse{}
		if created := classifierLabels(d); len(created) > 0 {
			ok.Headers = map[string]string{"baggage": mergeBaggage(strings.Join(header.Values("Baggage"), ","), created)}
		}
		out.Status = &rpcstatus.Status{Code: int32(codes.OK)}
		out.HttpResponse = &ap.CheckHTTPResponse_OkResponse{OkResponse: ok}
	} else {
		denied := &ap.DeniedHttpResponse{Status: int32(deniedHTTPStatus(d)), Headers: map[string]string{}}
		h := http.Header{}
		flow.SetDecisionHeaders(h, d)
		for k, vs := range h {
			denied.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
		}
		// The wait is the retry-after header (SetDecisionHeaders wrote
		// it, rounded up): the check response does not repeat it.
		cr.WaitTime = nil
		out.Status = &rpcstatus.Status{Code: int32(codes.Unavailable)}
		out.HttpResponse = &ap.CheckHTTPResponse_DeniedResponse{DeniedResponse: denied}
	}
	raw, err := proto.Marshal(cr)
	if err != nil {
		return nil, status.Error(codes.Internal, "fluxgate: "+err.Error())
	}
	out.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{
		metadataCheckResponse: structpb.NewStringValue(base64.StdEncoding.EncodeToString(raw)),
	}}
	return out, nil
}

// deniedHTTPStatus is the HTTP status of a rejection: the rejecting
// component's, else by reason as Aperture answers.
func deniedHTTPStatus(d *controlpoint.Decision) int {
	if d.StatusCode != 0 {
		return d.StatusCode
	}
	switch d.Reason {
	case controlpoint.ReasonRateLimited:
		return http.StatusTooManyRequests
	case controlpoint.ReasonNotSampled, controlpoint.ReasonNoMatchingRamp:
		return http.StatusForbidden
	}
	return http.StatusServiceUnavailable
}

// httpFlavor is OpenTelemetry's http.flavor of a protocol name.
func httpFlavor(protocol string) string {
	switch protocol {
	case "HTTP/1.0":
		return "1.0"
	case "HTTP/1.1":
		return "1.1"
	case "HTTP/2":
		return "2.0"
	case "HTTP/3":
		return "3.0"
	}
	return protocol
}
