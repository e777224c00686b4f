package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/internal/policytest"
)

// TestFlowEndOverGRPC: a remote client that reports flow ends keeps its
// slot count right; one that reports an unknown id is told so.
func TestFlowEndOverGRPC(t *testing.T) {
	s, _ := newTestServer(t, policytest.OneSlot("api"))
	c := pb.NewFlowControlServiceClient(dialGRPC(t, s))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		resp, err := c.Check(ctx, &pb.CheckRequest{ControlPoint: "api"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED || resp.GetFlowId() == 0 {
			t.Fatalf("flow %d: %v with flow_id %d, want accepted with an id (the previous one ended)", i, resp.GetDecisionType(), resp.GetFlowId())
		}
		if busy, _ := c.Check(ctx, &pb.CheckRequest{ControlPoint: "api"}); busy.GetDecisionType() != pb.DecisionType_DECISION_TYPE_REJECTED {
			t.Fatalf("flow %d: a second flow was admitted while the only slot is held", i)
		}
		end, err := c.FlowEnd(ctx, &pb.FlowEndRequest{FlowId: resp.GetFlowId()})
		if err != nil || !end.GetFound() {
			t.Fatalf("FlowEnd: %v, found %v", err, end.GetFound())
		}
	}
	if end, err := c.FlowEnd(ctx, &pb.FlowEndRequest{FlowId: 12345}); err != nil || end.GetFound() {
		t.Fatalf("FlowEnd of an unknown id: found %v, err %v; want not found", end.GetFound(), err)
	}
	if _, err := c.FlowEnd(ctx, &pb.FlowEndRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FlowEnd without an id: %v, want InvalidArgument", err)
	}
}

// TestFlowEndOverHTTP does the same with POST /v1/check and
// POST /v1/flow/end, and checks that nginx auth_request flows (which
// cannot report an end) do not take the slot.
func TestFlowEndOverHTTP(t *testing.T) {
	s, _ := newTestServer(t, policytest.OneSlot("api"))
	w := serve(s, "POST", "/v1/check", `{"control_point":"api"}`, nil)
	var resp struct {
		DecisionType string `json:"decision_type"`
		FlowID       string `json:"flow_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.DecisionType != "DECISION_TYPE_ACCEPTED" || resp.FlowID == "" || resp.FlowID == "0" {
		t.Fatalf("check: %s (%v), want accepted with a flow_id", w.Body, err)
	}
	for i := 0; i < 3; i++ {
		ar := serve(s, "GET", "/v1/check/http", "", http.Header{"X-Original-Uri": {"/x"}, "X-Fluxgate-Control-Point": {"api"}})
		if ar.Code != http.StatusOK {
			t.Fatalf("auth_request %d while the slot is held: %d, want 200 (passed through)", i, ar.Code)
		}
	}
	if w := serve(s, "POST", "/v1/check", `{"control_point":"api"}`, nil); !json.Valid(w.Body.Bytes()) || !strings.Contains(w.Body.String(), "REJECTED") {
		t.Fatalf("second check while the slot is held: %s, want rejected", w.Body)
	}
	id, _ := strconv.ParseUint(resp.FlowID, 10, 64)
	if w := serve(s, "POST", "/v1/flow/end", `{"flow_id":`+strconv.FormatUint(id, 10)+`}`, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `"found":true`) {
		t.Fatalf("flow end: %d %s", w.Code, w.Body)
	}
	if w := serve(s, "POST", "/v1/flow/end", `{"failed":true}`, nil); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "flow_id is required") {
		t.Fatalf("flow end without an id: %d %s, want 400 naming flow_id", w.Code, w.Body)
	}
	if w := serve(s, "POST", "/v1/check", `{"control_point":"api"}`, nil); !strings.Contains(w.Body.String(), "ACCEPTED") {
		t.Fatalf("check after the end: %s, want accepted", w.Body)
	}
}

// TestFlowEndOverAuthRequest: an auth_request caller that promises to
// report ends (X-FluxGate-Flow-End: report, as the nginx example's
// post_action does) takes the slot, gets the id to end it with, and frees
// it by POST /v1/flow/end.
func TestFlowEndOverAuthRequest(t *testing.T) {
	s, _ := newTestServer(t, policytest.OneSlot("api"))
	h := http.Header{"X-Original-Uri": {"/x"}, "X-Fluxgate-Control-Point": {"api"}, "X-Fluxgate-Flow-End": {"report"}}
	for i := 0; i < 3; i++ {
		ar := serve(s, "GET", "/v1/check/http", "", h)
		id := ar.Header().Get("X-FluxGate-Flow-Id")
		if ar.Code != http.StatusOK || id == "" || id == "0" {
			t.Fatalf("flow %d: %d with flow id %q, want 200 and an id (the previous flow ended)", i, ar.Code, id)
		}
		if busy := serve(s, "GET", "/v1/check/http", "", h); busy.Code == http.StatusOK || busy.Header().Get("X-FluxGate-Decision") != "rejected" {
			t.Fatalf("flow %d: a second flow got %d while the only slot is held, want a rejection", i, busy.Code)
		}
		if w := serve(s, "POST", "/v1/flow/end", `{"flow_id":"`+id+`","failed":false}`, nil); w.Code != 200 || !strings.Contains(w.Body.String(), `"found":true`) {
			t.Fatalf("flow %d end: %d %s", i, w.Code, w.Body)
		}
	}
	bad := http.Header{"X-Original-Uri": {"/x"}, "X-Fluxgate-Flow-End": {"yes"}}
	if w := serve(s, "GET", "/v1/check/http", "", bad); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "X-FluxGate-Flow-End") {
		t.Fatalf("unknown X-FluxGate-Flow-End value: %d %s, want 400 naming the header", w.Code, w.Body)
	}
}
