package fluxmeter

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
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
// (GRPCAdmit), and the stats handler lets it go when the call ends.
type exportGate struct {
	slots chan struct{}
}

type gateSlotKey struct{}

// gateSlot is a slot an admitted call holds; release gives it back once.
type gateSlot struct {
	once sync.Once
	g    *exportGate
}

func (s *gateSlot) release() { s.once.Do(func() { <-s.g.slots }) }

// GRPCAdmit is the receiver's part of a gRPC server's tap handle (a
// server has one; the agent chains it after its token check): it admits
// an Export call while fewer than MaxGRPCExportsInFlight are in flight
// and refuses it with Unavailable otherwise; other calls pass. The server
// needs GRPCStatsHandler too, which frees the slot when the call ends.
func (r *Receiver) GRPCAdmit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != exportMethod {
		return ctx, nil
	}
	select {
	case r.gate.slots <- struct{}{}:
		return context.WithValue(ctx, gateSlotKey{}, &gateSlot{g: &r.gate}), nil
	default:
		r.busy.WithLabelValues("grpc").Inc()
		return ctx, errExportsBusy
	}
}

// GRPCStatsHandler frees the slot of an admitted Export when it ends.
func (r *Receiver) GRPCStatsHandler() stats.Handler { return gateStats{} }

type gateStats struct{}

func (gateStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (gateStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok {
		if slot, ok := ctx.Value(gateSlotKey{}).(*gateSlot); ok {
			slot.release()
		}
	}
}
func (gateStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (gateStats) HandleConn(context.Context, stats.ConnStats)                       {}
