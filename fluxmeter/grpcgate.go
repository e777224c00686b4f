package fluxmeter

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// MaxGRPCExportsInFlight bounds the OTLP/gRPC Export calls the agent
// holds at once, on every port that serves them together: gRPC collects a
// whole message (up to 16 MiB on the OTLP port) before the receiver sees
// it, with up to 1,000 streams a connection, so nothing but a count of
// calls bounds that memory: 8 × 16 MiB. A call past it is answered
// Unavailable at once, before its message is read, which OTLP exporters
// retry with backoff. Exporters send one batch at a time, in
// milliseconds, so 8 is far above what a node's applications use.
const MaxGRPCExportsInFlight = 8

var exportMethod = "/" + TraceServiceName + "/Export"

// errExportsBusy answers an Export past MaxGRPCExportsInFlight.
var errExportsBusy = status.Error(codes.Unavailable, "fluxgate: too many OTLP exports in flight; retry shortly")

// exportGate counts Export calls in flight: the tap handle admits one
// (GRPCAdmit) and the slot comes back when the call ends.
type exportGate struct {
	slots chan struct{}
}

type gateSlotKey struct{}

// The states of a gateSlot.
const (
	slotAdmitted  = iota // by the tap; the handler has not started
	slotInHandler        // the export handler holds it until it returns
	slotReleased
)

// gateSlot is a slot an admitted call holds. It is given back once: when
// the handler returns if the handler started, else when the call's
// context ends (gRPC cancels a stream's context when the stream closes,
// however it closes). No stats handler is needed for this, so the check
// port's calls pay nothing for it.
type gateSlot struct {
	state atomic.Int32
	g     *exportGate
}

// abandon frees the slot unless the handler holds it.
func (s *gateSlot) abandon() {
	if s.state.CompareAndSwap(slotAdmitted, slotReleased) {
		<-s.g.slots
	}
}

// enter hands the slot to the export handler; leave frees it.
func (s *gateSlot) enter() bool { return s.state.CompareAndSwap(slotAdmitted, slotInHandler) }
func (s *gateSlot) leave() {
	if s.state.CompareAndSwap(slotInHandler, slotReleased) {
		<-s.g.slots
	}
}

// holdSlot keeps the call's slot, if it has one, until the returned
// function is called: the export handler's part of the gate.
func holdSlot(ctx context.Context) func() {
	if slot, ok := ctx.Value(gateSlotKey{}).(*gateSlot); ok && slot.enter() {
		return slot.leave
	}
	return func() {}
}

// GRPCAdmit is the receiver's part of a gRPC server's tap handle (a
// server has one; the agent chains it after its token check): it admits
// an Export call while fewer than MaxGRPCExportsInFlight are in flight
// and refuses it with Unavailable otherwise; other calls pass. The
// receiver's own service (RegisterGRPC) gives the slot back when its
// handler returns, before it answers; a call served by another handler
// (the generated TraceService) gives it back when its stream's context
// ends, a moment after its answer.
func (r *Receiver) GRPCAdmit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != exportMethod {
		return ctx, nil
	}
	select {
	case r.gate.slots <- struct{}{}:
		slot := &gateSlot{g: &r.gate}
		context.AfterFunc(ctx, slot.abandon)
		return context.WithValue(ctx, gateSlotKey{}, slot), nil
	default:
		r.busy.WithLabelValues("grpc").Inc()
		return ctx, errExportsBusy
	}
}
