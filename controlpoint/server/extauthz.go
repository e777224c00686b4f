package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// ContextExtensionControlPoint is the ext_authz context extension that
// names the control point, set per route in Envoy's configuration.
const ContextExtensionControlPoint = "control-point"

// ContextExtensionFlowEnd is the ext_authz context extension that, set to
// "report" on a route (ExtAuthzPerRoute check_settings), promises that
// Envoy reports the end of every flow admitted there through the access
// log service (accesslog.go): the flow then holds its slots, and the
// answer carries its id in the x-fluxgate-flow-id request header for the
// access log to send back. The request header X-FluxGate-Flow-End:
// report, as nginx sends it, does the same; a route's
// request_headers_to_add cannot set it for ext_authz, as Envoy's router
// adds those after every other filter ran.
const ContextExtensionFlowEnd = "flow-end"

// authorization is Envoy's envoy.service.auth.v3.Authorization.
type authorization struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

var _ authv3.AuthorizationServer = authorization{}

func registerAuthorization(g grpc.ServiceRegistrar, s *Server) {
	authv3.RegisterAuthorizationServer(g, authorization{s: s})
}

// Check decides the HTTP request Envoy describes. It fails only when the
// caller has already given up; every decision is an OK gRPC call whose
// status field says allowed or denied.
func (a authorization) Check(ctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	req, baggage, err := extAuthzFlow(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "fluxgate: "+err.Error())
	}
	d := a.s.decide(ctx, &req)
	defer a.s.release(d)
	if !d.Accepted {
		return deniedResponse(d), nil
	}
	h := http.Header{}
	flow.SetDecisionHeaders(h, d)
	up := []*corev3.HeaderValueOption{setHeader(flow.HeaderDecision, h.Get(flow.HeaderDecision))}
	if labels := classifierLabels(d); len(labels) > 0 {
		up = append(up, setHeader("baggage", mergeBaggage(baggage, labels)))
	}
	ok := &authv3.OkHttpResponse{Headers: up, ResponseHeadersToAdd: headerOptions(h)}
	if id := d.FlowID; id != 0 {
		ok.Headers = append(ok.Headers, setHeader(HeaderFlowID, strconv.FormatUint(id, 10)))
	} else if !req.NoFlowEnd {
		// No slot held: an id the client sent must not reach the access
		// log, where it would end somebody else's flow.
		ok.HeadersToRemove = []string{strings.ToLower(HeaderFlowID)}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}, nil
}

// extAuthzControlPoint is the control point an ext_authz request names.
func extAuthzControlPoint(in *authv3.CheckRequest) string {
	if cp := in.GetAttributes().GetContextExtensions()[ContextExtensionControlPoint]; cp != "" {
		return cp
	}
	return DefaultControlPoint
}

// extAuthzFlow turns an ext_authz request into a flow, returning also the
// request's baggage header. It fails only for a flow-end promise other
// than "report".
func extAuthzFlow(in *authv3.CheckRequest) (controlpoint.Request, string, error) {
	attrs := in.GetAttributes()
	cp := extAuthzControlPoint(in)
	hr := attrs.GetRequest().GetHttp()
	header := make(http.Header, len(hr.GetHeaders()))
	var flowEnd string // the X-FluxGate-Flow-End header, not a label
	add := func(k, v string) {
		if k == "" || k[0] == ':' { // HTTP/2 pseudo-headers are in the fields below
			return
		}
		if strings.EqualFold(k, HeaderFlowEnd) {
			flowEnd = v
			return
		}
		header.Add(k, v)
	}
	for k, v := range hr.GetHeaders() {
		add(k, v)
	}
	if len(hr.GetHeaders()) == 0 { // Envoy with encode_raw_headers
		for _, hv := range hr.GetHeaderMap().GetHeaders() {
			v := hv.GetValue()
			if v == "" {
				v = string(hv.GetRawValue())
			}
			add(hv.GetKey(), v)
		}
	}
	labels := flow.HTTPLabels(hr.GetMethod(), hr.GetPath(), hr.GetHost(), hr.GetScheme(), header)
	if addr := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(); addr != "" {
		flow.SetClientAddress(labels, addr)
	}
	reportsEnd, err := promisesFlowEnd(attrs.GetContextExtensions()[ContextExtensionFlowEnd], flowEnd)
	req := controlpoint.Request{ControlPoint: cp, Labels: labels, NoFlowEnd: !reportsEnd}
	return req, strings.Join(header.Values("Baggage"), ","), err
}

// promisesFlowEnd reports whether the flow-end context extension ext or
// the X-FluxGate-Flow-End header value h promise the flow's end ("report",
// in any case); any other non-empty value is an error.
func promisesFlowEnd(ext, h string) (bool, error) {
	reports := false
	for _, v := range []struct{ name, value string }{{"context extension " + ContextExtensionFlowEnd, ext}, {HeaderFlowEnd, h}} {
		switch s := strings.TrimSpace(v.value); {
		case s == "":
		case strings.EqualFold(s, "report"):
			reports = true
		default:
			return false, fmt.Errorf("%s: %q: the only value is report (Envoy reports each admitted flow's end through the access log service)", v.name, s)
		}
	}
	return reports, nil
}

// deniedBody is the JSON body Envoy sends to a rejected client.
type deniedBody struct {
	Error             string `json:"error"`
	Reason            string `json:"reason"`
	Policy            string `json:"policy,omitempty"`
	Component         string `json:"component,omitempty"`
	RetryAfterSeconds string `json:"retry_after_seconds,omitempty"`
}

func deniedResponse(d *controlpoint.Decision) *authv3.CheckResponse {
	h := http.Header{}
	flow.SetDecisionHeaders(h, d)
	h.Set("Content-Type", "application/json")
	reason := flow.ReasonLabel(d.Reason)
	body, _ := json.Marshal(deniedBody{
		Error:             "request rejected by flow control: " + reason,
		Reason:            reason,
		Policy:            h.Get(flow.HeaderPolicy),
		Component:         h.Get(flow.HeaderComponent),
		RetryAfterSeconds: h.Get("Retry-After"),
	})
	code := codes.PermissionDenied
	if d.Reason == controlpoint.ReasonRateLimited {
		code = codes.ResourceExhausted
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: "fluxgate: rejected: " + reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(flow.DeniedStatus(d))},
			Headers: headerOptions(h),
			Body:    string(body) + "\n",
		}},
	}
}

// headerOptions converts h into Envoy headers that replace any header of
// the same name, in name order.
func headerOptions(h http.Header) []*corev3.HeaderValueOption {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]*corev3.HeaderValueOption, 0, len(names))
	for _, k := range names {
		out = append(out, setHeader(k, strings.Join(h[k], ",")))
	}
	return out
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
