package flow

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// wireDecisions are decisions with every field the wire carries, and the
// values it treats apart: NaN, infinities, -0, "never", negative and
// sub-second durations, negative status codes and indexes, empty labels.
func wireDecisions() []Decision {
	return []Decision{
		{},
		{ControlPoint: "ingress", Accepted: true, Decider: -1},
		{ControlPoint: "api", Accepted: true, Decider: -1, FlowID: 1 << 40, FluxMeters: []string{"ns/p/m", ""},
			Limiters: []LimiterDecision{{PolicyName: "p", PolicyNamespace: "ns", ComponentID: "1", ComponentType: "rate_limiter",
				Remaining: 4, Limit: 5, Reset: time.Second + 5*time.Nanosecond, LimitKey: "alice", Priority: 3, Workload: "w", StatusCode: 429}},
			Classifiers: []ClassifierResult{{PolicyName: "p", PolicyNamespace: "ns", Index: 2, Labels: map[string]string{"tier": "gold", "": "", "k": ""}, Error: "e"}}},
		{ControlPoint: "api", Reason: ReasonRateLimited, StatusCode: 429, Wait: 3 * time.Second, Decider: 1,
			Limiters: []LimiterDecision{
				{PolicyName: "dry", ComponentID: "0", ComponentType: "sampler", Dropped: true, DryRun: true, Reason: ReasonNotSampled,
					Remaining: math.NaN(), Limit: math.Inf(1), Wait: time.Duration(math.MaxInt64), Reset: -time.Second},
				{PolicyName: "p", ComponentID: "1", ComponentType: "rate_limiter", Dropped: true, Reason: ReasonRateLimited,
					Wait: 1500 * time.Millisecond, Limit: math.Copysign(0, -1), Remaining: math.Inf(-1), Failure: "fail_closed: timeout"},
			}},
		{ControlPoint: "x", StatusCode: -1, Wait: time.Duration(math.MaxInt64), Classifiers: []ClassifierResult{{Index: -3}, {}}},
		{ControlPoint: "bad \xc4"},
		{ControlPoint: string(make([]byte, 300)), Accepted: true, Limiters: []LimiterDecision{{LimitKey: string(make([]byte, 200)), Failure: string(make([]byte, 140))}}},
	}
}

// AppendProto writes the message ToProto makes.
func TestAppendProtoIsToProto(t *testing.T) {
	for i, d := range wireDecisions() {
		checkAppendProto(t, i, &d)
	}
}

func checkAppendProto(t *testing.T, i int, d *Decision) {
	t.Helper()
	want := d.ToProto()
	b, err := d.AppendProto([]byte("prefix"))
	if _, merr := proto.Marshal(want); merr != nil || err != nil {
		if merr == nil || err == nil || string(b) != "prefix" {
			t.Fatalf("decision %d: proto.Marshal: %v; AppendProto: %v, %q", i, merr, err, b)
		}
		return
	}
	if string(b[:6]) != "prefix" {
		t.Fatalf("decision %d: AppendProto overwrote what it appends to", i)
	}
	var got pb.CheckResponse
	if err := proto.Unmarshal(b[6:], &got); err != nil {
		t.Fatalf("decision %d: AppendProto's bytes do not decode: %v", i, err)
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("decision %d: AppendProto = %v\nToProto = %v", i, &got, want)
	}
	if len(b)-6 != proto.Size(want) {
		t.Fatalf("decision %d: AppendProto wrote %d bytes, proto.Marshal %d", i, len(b)-6, proto.Size(want))
	}
}

func TestAppendProtoAllocatesNothing(t *testing.T) {
	d := wireDecisions()[3]
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf, _ = d.AppendProto(buf[:0]) }); n != 0 {
		t.Fatalf("AppendProto allocated %v times a call", n)
	}
}

func FuzzAppendProto(f *testing.F) {
	f.Add("cp", true, int32(2), int64(3e9), uint64(7), "p", "key", 1.5, -2.0, int64(1e6), "tier", "gold", -4)
	f.Fuzz(func(t *testing.T, cp string, accepted bool, reason int32, wait int64, flowID uint64, policy, key string, remaining, limit float64, reset int64, lk, lv string, index int) {
		d := Decision{ControlPoint: cp, Accepted: accepted, Reason: Reason(reason), StatusCode: int(reason) * 7, Wait: time.Duration(wait), FlowID: flowID,
			FluxMeters: []string{policy},
			Limiters: []LimiterDecision{{PolicyName: policy, LimitKey: key, Remaining: remaining, Limit: limit, Wait: time.Duration(-wait), Reset: time.Duration(reset),
				Dropped: !accepted, Reason: Reason(reason), Failure: lv}},
			Classifiers: []ClassifierResult{{PolicyName: policy, Index: index, Labels: map[string]string{lk: lv}}}}
		checkAppendProto(t, 0, &d)
	})
}
