package server

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// outcome is what a client of any adapter learns about a decision.
type outcome struct {
	Accepted   bool
	Status     int // HTTP status the flow gets
	Reason     string
	Policy     string
	Component  string
	RetryAfter string
}

// outcomeOfProto reads an outcome from a CheckResponse field by field.
func outcomeOfProto(resp *pb.CheckResponse) outcome {
	if resp.GetDecisionType() == pb.DecisionType_DECISION_TYPE_ACCEPTED {
		return outcome{Accepted: true, Status: http.StatusOK}
	}
	var d flow.Decision
	d.FromProto(resp)
	o := outcome{Status: flow.DeniedStatus(&d), Reason: flow.ReasonLabel(resp.GetRejectReason())}
	for _, l := range resp.GetLimiterDecisions() {
		if l.GetDropped() && !l.GetDryRun() {
			o.Policy, o.Component = l.GetPolicyNamespace()+"/"+l.GetPolicyName(), l.GetComponentId()
			break
		}
	}
	if w := resp.GetWaitTime(); w != nil {
		o.RetryAfter = strconv.Itoa(int(math.Ceil(w.AsDuration().Seconds())))
	}
	return o
}

// outcomeOfHeaders reads an outcome from an HTTP status and headers.
func outcomeOfHeaders(code int, h http.Header) outcome {
	if code == http.StatusOK {
		return outcome{Accepted: true, Status: code}
	}
	return outcome{Status: code, Reason: h.Get(flow.HeaderReason), Policy: h.Get(flow.HeaderPolicy),
		Component: h.Get(flow.HeaderComponent), RetryAfter: h.Get("Retry-After")}
}

func envoyHeaders(opts []*corev3.HeaderValueOption) http.Header {
	h := http.Header{}
	for _, o := range opts {
		h.Add(o.GetHeader().GetKey(), o.GetHeader().GetValue())
	}
	return h
}

// tableFlow is one request in the agreement table, as an HTTP request.
type tableFlow struct {
	at         time.Duration // since t0
	user, tier string
	want       outcome
}

func (f tableFlow) headers() map[string]string {
	h := map[string]string{}
	if f.user != "" {
		h["X-User"] = f.user
	}
	if f.tier != "" {
		h["X-Tier"] = f.tier
	}
	return h
}

// The labels an HTTP adapter would build, for the adapters that take
// labels directly.
func (f tableFlow) labels() map[string]string {
	l := map[string]string{"http.method": "GET", "http.target": "/orders?page=2", "http.host": "shop.example", "http.scheme": "http"}
	for k, v := range f.headers() {
		l[flow.HeaderLabel(k)] = v
	}
	return l
}

func TestAdaptersAgree(t *testing.T) {
	ms := time.Millisecond
	accepted := outcome{Accepted: true, Status: 200}
	limited := func(retry string) outcome {
		return outcome{Status: 429, Reason: "rate_limited", Policy: "default/per-user-limit", Component: "0", RetryAfter: retry}
	}
	flows := []tableFlow{
		{at: 0, user: "alice", tier: "free", want: accepted},
		{at: 1 * ms, user: "alice", tier: "free", want: accepted},
		{at: 2 * ms, user: "alice", tier: "free", want: accepted},
		{at: 3 * ms, user: "alice", tier: "free", want: accepted},
		{at: 4 * ms, user: "alice", tier: "free", want: accepted},
		{at: 5 * ms, user: "alice", tier: "free", want: limited("12")}, // 5 per 60 s: one token every 12 s
		{at: 6 * ms, user: "bob", tier: "free", want: accepted},
		{at: 7 * ms, user: "carol", tier: "paid", want: accepted},
		{at: 8 * ms, user: "alice", tier: "paid", want: accepted},              // paid flows are not limited
		{at: 6 * time.Second, user: "alice", tier: "free", want: limited("6")}, // tokens refill from the 5th take at 4 ms
		{at: 12*time.Second + 5*ms, user: "alice", tier: "free", want: accepted},
		{at: 12*time.Second + 6*ms, user: "alice", tier: "free", want: limited("12")},
		{at: 13 * time.Second, want: accepted}, // no user, no tier: nothing matches
	}

	adapters := map[string]func(t *testing.T) func(tableFlow) outcome{
		"grpc": func(t *testing.T) func(tableFlow) outcome {
			s, c := newTestServer(t, perUserLimit)
			client := pb.NewFlowControlServiceClient(dialGRPC(t, s))
			return func(f tableFlow) outcome {
				c.t = t0.Add(f.at)
				resp, err := client.Check(context.Background(), &pb.CheckRequest{ControlPoint: "ingress", Labels: f.labels()})
				if err != nil {
					t.Fatal(err)
				}
				return outcomeOfProto(resp)
			}
		},
		"json": func(t *testing.T) func(tableFlow) outcome {
			s, c := newTestServer(t, perUserLimit)
			return func(f tableFlow) outcome {
				c.t = t0.Add(f.at)
				body, _ := json.Marshal(map[string]any{"control_point": "ingress", "labels": f.labels()})
				w := serve(s, "POST", "/v1/check", string(body), http.Header{"Content-Type": {"application/json"}})
				if w.Code != 200 {
					t.Fatalf("POST /v1/check = %d %s", w.Code, w.Body)
				}
				var resp pb.CheckResponse
				if err := protojson.Unmarshal(w.Body.Bytes(), &resp); err != nil {
					t.Fatal(err)
				}
				return outcomeOfProto(&resp)
			}
		},
		"ext_authz": func(t *testing.T) func(tableFlow) outcome {
			s, c := newTestServer(t, perUserLimit)
			client := authv3.NewAuthorizationClient(dialGRPC(t, s))
			return func(f tableFlow) outcome {
				c.t = t0.Add(f.at)
				h := map[string]string{":authority": "shop.example", ":path": "/orders?page=2", ":method": "GET"}
				for k, v := range f.headers() {
					h[http.CanonicalHeaderKey(k)] = v
				}
				resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
					Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
						Method: "GET", Path: "/orders?page=2", Host: "shop.example", Scheme: "http", Headers: h,
					}},
				}})
				if err != nil {
					t.Fatal(err)
				}
				if ok := resp.GetOkResponse(); ok != nil {
					if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
						t.Errorf("ok_response with status %v", resp.GetStatus())
					}
					return outcome{Accepted: true, Status: 200}
				}
				d := resp.GetDeniedResponse()
				return outcomeOfHeaders(int(d.GetStatus().GetCode()), envoyHeaders(d.GetHeaders()))
			}
		},
		"auth_request": func(t *testing.T) func(tableFlow) outcome {
			s, c := newTestServer(t, perUserLimit)
			return func(f tableFlow) outcome {
				c.t = t0.Add(f.at)
				h := http.Header{"X-Original-Uri": {"/orders?page=2"}, "X-Original-Method": {"GET"}, "X-Original-Host": {"shop.example"}}
				for k, v := range f.headers() {
					h.Set(k, v)
				}
				w := serve(s, "GET", "/v1/check/http", "", h)
				return outcomeOfHeaders(w.Code, w.Header())
			}
		},
	}
	for name, start := range adapters {
		t.Run(name, func(t *testing.T) {
			check := start(t)
			for i, f := range flows {
				if got := check(f); got != f.want {
					t.Errorf("flow %d (%s/%s at %v): got %+v, want %+v", i, f.user, f.tier, f.at, got, f.want)
				}
			}
		})
	}
}
