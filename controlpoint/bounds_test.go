package controlpoint

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

// Issue 14: 100 × 1 MB control point names made a 100 MB /metrics. A
// name over MaxControlPointBytes is counted under __other__.
func TestLongControlPointNamesStayOutOfMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, perUserLimit)
	for i := range 20 {
		check(e, t0, fmt.Sprintf("%d-%s", i, strings.Repeat("x", 1<<20)), nil)
	}
	check(e, t0, strings.Repeat("y", MaxControlPointBytes), nil) // at the bound: its own series
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, mf := range mfs {
		size += len(mf.String())
	}
	if size > 64<<10 {
		t.Fatalf("metrics hold %d KB after 20 checks at 1 MB control points", size>>10)
	}
	if got := testutil.ToFloat64(e.decisions.WithLabelValues("", "", OtherControlPoint, metricnames.DecisionAccepted, "no_match")); got != 20 {
		t.Fatalf("__other__ no_match = %v, want 20", got)
	}
	for _, cp := range e.ControlPoints() {
		if len(cp.Name) > MaxControlPointBytes {
			t.Fatalf("/v1/controlpoints lists a name of %d bytes", len(cp.Name))
		}
	}
}

func TestRequestFromProtoBounds(t *testing.T) {
	big := strings.Repeat("v", MaxLabelValueBytes+1)
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[fmt.Sprint("k", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		in   *pb.CheckRequest
		want string // the error, "" for none
	}{
		{"at the bounds", &pb.CheckRequest{ControlPoint: strings.Repeat("c", MaxControlPointBytes),
			Labels: map[string]string{strings.Repeat("k", MaxLabelKeyBytes): strings.Repeat("v", MaxLabelValueBytes)}}, ""},
		{"long control point", &pb.CheckRequest{ControlPoint: strings.Repeat("c", 1<<20)},
			"check request over its bounds: control_point of 1048576 bytes, at most 256"},
		{"long label value", &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": big}},
			`check request over its bounds: label "user": value of 16385 bytes, at most 16384`},
		{"long label key", &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{strings.Repeat("k", 300): "v"}},
			`check request over its bounds: label key "` + strings.Repeat("k", 64) + `"… of 300 bytes, at most 256`},
		{"too many labels", &pb.CheckRequest{ControlPoint: "ingress", Labels: many},
			"check request over its bounds: 257 labels, at most 256"},
	} {
		_, err := RequestFromProto(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want || !errors.Is(err, ErrTooLarge)):
			t.Errorf("%s: error %v, want %s", tc.name, err, tc.want)
		}
	}
}

// A rate limiter keeps within its memory budget, exports its buckets and
// evictions, and keys a 1 MB label value under a bounded key.
func TestRateLimiterBucketBudget(t *testing.T) {
	const n = 100
	reg := prometheus.NewRegistry()
	e, err := New(Options{Registerer: reg, DecisionLogPerSecond: -1, RateLimiterMemory: n * ratelimit.BucketBytes})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicies([]*policies.Policy{parsePolicy(t, perUserLimit)}); err != nil {
		t.Fatal(err)
	}
	for i := range n + 1 {
		check(e, t0, "ingress", map[string]string{"user": fmt.Sprintf("u%03d", i), "tier": "free"})
	}
	want := `
# HELP fluxgate_ratelimiter_buckets Buckets a rate limiter holds on this agent: local buckets, lazy sync's local shares and local_fallback buckets.
# TYPE fluxgate_ratelimiter_buckets gauge
fluxgate_ratelimiter_buckets{component_id="0",policy_name="per-user-limit",policy_namespace="default"} 100
# HELP fluxgate_ratelimiter_evictions_total Buckets a rate limiter evicted, least recently used first, to keep within its memory budget; an evicted bucket comes back full, so each eviction may admit up to one bucket of tokens early.
# TYPE fluxgate_ratelimiter_evictions_total counter
fluxgate_ratelimiter_evictions_total{component_id="0",policy_name="per-user-limit",policy_namespace="default"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fluxgate_ratelimiter_buckets", "fluxgate_ratelimiter_evictions_total"); err != nil {
		t.Fatal(err)
	}
	d := check(e, t0, "ingress", map[string]string{"user": strings.Repeat("x", 1<<20), "tier": "free"})
	if k := d.Limiters[0].LimitKey; len(k) > 136 || !strings.Contains(k, "~sha256:") {
		t.Fatalf("a 1 MB user is keyed %.80q… (%d bytes)", k, len(k))
	}
}

// The control points and label keys the engine remembers are copies of
// their own (review): a request's strings may be parts of a larger one
// (the agent's gRPC decoder makes them parts of one copy of the message,
// up to 4 KiB; the lean gateway's baggage keys are parts of one copy of
// the head, up to 32 KiB), and 1,000 control points of 100 keys each
// must not keep a message apiece.
func TestControlPointsKeepNoPartOfTheRequest(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), perUserLimit)
	msg := strings.Repeat("m", 4<<10) + "shop" + "cart.id"
	cp, key := msg[4<<10:4<<10+4], msg[4<<10+4:]
	within := func(s string) bool {
		p, base := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(msg)))
		return p >= base && p < base+uintptr(len(msg))
	}
	check(e, t0, cp, map[string]string{key: "7"})
	cps := e.ControlPoints()
	if len(cps) != 1 || cps[0].Name != "shop" || len(cps[0].LabelKeys) != 1 || cps[0].LabelKeys[0] != "cart.id" {
		t.Fatalf("control points %+v, want shop with the key cart.id", cps)
	}
	if within(cps[0].Name) {
		t.Error("the control point's name kept is a part of the request's message")
	}
	if within(cps[0].LabelKeys[0]) {
		t.Error("the label key kept is a part of the request's message")
	}
	if _, name := e.points.stats(cp); within(name) {
		t.Error("the name for the control point's metrics is a part of the request's message")
	}
}
