package circuittest

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// ActuatorCall is one SetComponentInput call.
type ActuatorCall struct {
	Policy    policies.Key
	Component int
	Port      string
	Value     float64 // NaN for an invalid signal
}

// FakeActuators is a circuit.ActuatorSink that records every call. It is
// safe for concurrent use; the zero value is ready.
type FakeActuators struct {
	// Err, when set, is returned by every call (the call is still recorded).
	Err error

	mu    sync.Mutex
	calls []ActuatorCall // guarded by mu
}

var _ circuit.ActuatorSink = (*FakeActuators)(nil)

// SetComponentInput implements circuit.ActuatorSink.
func (f *FakeActuators) SetComponentInput(policy policies.Key, component int, port string, value float64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActuatorCall{policy, component, port, value})
	return f.Err
}

// Calls returns the calls so far.
func (f *FakeActuators) Calls() []ActuatorCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ActuatorCall(nil), f.calls...)
}

// Last is the latest value a component's port received, and whether it
// received any.
func (f *FakeActuators) Last(component int, port string) (float64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if c := f.calls[i]; c.Component == component && c.Port == port {
			return c.Value, true
		}
	}
	return math.NaN(), false
}

// AlertEvent is one notification an AlertSink received.
type AlertEvent struct {
	Resolve bool
	Alert   circuit.Alert
}

// FakeAlerts is a circuit.AlertSink that records notifications. It is safe
// for concurrent use; the zero value is ready.
type FakeAlerts struct {
	// Err, when set, is returned by every call (the call is still recorded).
	Err error

	mu     sync.Mutex
	events []AlertEvent // guarded by mu
}

var _ circuit.AlertSink = (*FakeAlerts)(nil)

// Fire implements circuit.AlertSink.
func (f *FakeAlerts) Fire(_ context.Context, a circuit.Alert) error { return f.add(false, a) }

// Resolve implements circuit.AlertSink.
func (f *FakeAlerts) Resolve(_ context.Context, a circuit.Alert) error { return f.add(true, a) }

func (f *FakeAlerts) add(resolve bool, a circuit.Alert) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, AlertEvent{resolve, a})
	return f.Err
}

// Events returns the notifications so far.
func (f *FakeAlerts) Events() []AlertEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]AlertEvent(nil), f.events...)
}

// WaitFor waits until at least n notifications arrived or timeout passed,
// and returns them.
func (f *FakeAlerts) WaitFor(n int, timeout time.Duration) []AlertEvent {
	deadline := time.Now().Add(timeout)
	for {
		ev := f.Events()
		if len(ev) >= n || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(time.Millisecond)
	}
}
