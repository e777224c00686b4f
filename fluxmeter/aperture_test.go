package fluxmeter

import (
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// apertureSpan is a flow span as Aperture's JavaScript SDK exports it:
// the check response as protobuf.js JSON (lowerCamelCase, enums as
// numbers), the flow status, and timestamps in Unix milliseconds.
func apertureSpan(response, status string, workloadStart, end int64) *tracepb.Span {
	return span(
		str("aperture.source", "sdk"),
		str(AttrApertureCheckResponse, response),
		str(AttrApertureFlowStatus, status),
		integer(AttrApertureFlowStart, workloadStart-3),
		integer(AttrApertureWorkloadStart, workloadStart),
		integer(AttrApertureFlowEnd, end),
	)
}

// TestApertureFlowSpans: spans of Aperture's SDKs are recorded on the flux
// meters their check response names, with the workload's duration, the
// decision and the flow status, whether they arrive decoded or on the wire
// path; a response in protojson's form (enum names, Aperture's Go SDK)
// reads the same.
func TestApertureFlowSpans(t *testing.T) {
	spans := []*tracepb.Span{
		apertureSpan(`{"controlPoint":"ingress","decisionType":0,"fluxMeterInfos":[{"fluxMeterName":"default/shop/lat"}]}`, "OK", 1_000, 1_004),
		apertureSpan(`{"controlPoint":"ingress","decisionType":0,"fluxMeterInfos":[{"fluxMeterName":"lat"}]}`, "Error", 2_000, 2_020),
		apertureSpan(`{"controlPoint":"ingress","decisionType":"DECISION_TYPE_REJECTED","fluxMeterInfos":[{"fluxMeterName":"lat"}]}`, "OK", 3_000, 3_000),
		apertureSpan(`{"control_point":"ingress","decision_type":"DECISION_TYPE_ACCEPTED","flux_meter_infos":[{"flux_meter_name":"lat"}]}`, "OK", 4_000, 4_002),
	}
	want := "flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=Error,flux_meter_name=lat,policy_name=shop} count=1 sum=20 le1=0 le10=0\n" +
		"flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,policy_name=shop} count=2 sum=6 le1=0 le10=2\n" +
		"flux_meter{decision_type=DECISION_TYPE_REJECTED,flow_status=OK,flux_meter_name=lat,policy_name=shop} count=1 sum=0 le1=1 le10=1\n"
	pol := parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [1, 10]}"))

	decoded := New(Options{})
	decoded.SetPolicies(pol)
	if rejected, why := decoded.Consume(batch(spans...)); rejected != 0 {
		t.Fatalf("decoded: %d spans refused: %s", rejected, why)
	}
	if got := scrape(t, decoded, "flux_meter"); got != want {
		t.Errorf("decoded spans:\ngot\n%swant\n%s", got, want)
	}

	wire := New(Options{})
	wire.SetPolicies(pol)
	body, err := proto.Marshal(&collectortrace.ExportTraceServiceRequest{ResourceSpans: batch(spans...)})
	if err != nil {
		t.Fatal(err)
	}
	if rejected, why, err := wire.ConsumeProto(body); err != nil || rejected != 0 {
		t.Fatalf("wire: %d refused (%s), err %v", rejected, why, err)
	}
	if got := scrape(t, wire, "flux_meter"); got != want {
		t.Errorf("wire spans:\ngot\n%swant\n%s", got, want)
	}

	// A response that is not JSON names nothing: the span is refused for
	// want of a control point, as any span without one.
	bad := New(Options{})
	bad.SetPolicies(pol)
	if rejected, _ := bad.Consume(batch(span(str(AttrApertureCheckResponse, "{not json")))); rejected != 1 {
		t.Errorf("a span with a malformed check response: %d refused, want 1", rejected)
	}
}
