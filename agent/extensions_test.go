package agent

import (
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

// recordedInput is one input a sink received.
type recordedInput struct {
	to    string
	index int
	port  string
	value float64
}

type recordingEngine struct{ got *[]recordedInput }

func (r recordingEngine) SetComponentInput(_ policies.Key, component int, port string, value float64) error {
	*r.got = append(*r.got, recordedInput{"engine", component, port, value})
	return nil
}

type recordingActuators struct{ got *[]recordedInput }

func (r recordingActuators) SetActuatorInput(spec any, port string, value float64) error {
	i := -1
	if _, ok := spec.(*policies.CanaryActuator); ok {
		i = 1
	}
	*r.got = append(*r.got, recordedInput{"extra", i, port, value})
	return nil
}

// Inputs of the kinds the engine builds go to the engine; inputs of any
// other actuator kind go to the sink set by SetActuators, or nowhere
// while none is set.
func TestExtensionsRouteActuatorKinds(t *testing.T) {
	var got []recordedInput
	x := &extensions{engine: recordingEngine{&got}}
	p := &policies.Policy{}
	p.Spec.Circuit.Components = []*policies.Component{
		{Kind: "flow_control.rate_limiter", Spec: &policies.RateLimiter{}},
		{Kind: "flow_control.canary", Spec: &policies.CanaryActuator{RouteID: "r"}},
	}
	key := policies.Key{Namespace: "default", Name: "p"}
	x.indexForeign(nil, &PolicySnapshot{Entries: map[policies.Key]*PolicyEntry{key: {Key: key, Object: p}}})

	for _, i := range []int{0, 1} {
		if err := x.SetComponentInput(key, i, "weight", 5); err != nil {
			t.Fatal(err)
		}
	}
	x.extra.Store(&actuatorsBox{recordingActuators{&got}})
	for _, i := range []int{0, 1} {
		if err := x.SetComponentInput(key, i, "weight", 7); err != nil {
			t.Fatal(err)
		}
	}
	want := []recordedInput{{"engine", 0, "weight", 5}, {"engine", 0, "weight", 7}, {"extra", 1, "weight", 7}}
	if len(got) != len(want) {
		t.Fatalf("inputs %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("inputs %v, want %v", got, want)
		}
	}
}
