package client

import (
	"context"
	"time"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// FlowEnder is a Checker that can be told when an admitted flow ends.
// A decision with a nonzero FlowID holds a slot of an
// adaptive_concurrency component until EndFlow is called with that id:
// the component frees the slot and learns the flow's latency. failed
// marks an error or a 5xx from the service. Remote, Guard and
// controlpoint.LocalChecker are FlowEnders; Middleware, the gRPC interceptor and the built-in gateway
// call EndFlow themselves.
type FlowEnder interface {
	EndFlow(ctx context.Context, id uint64, failed bool) error
}

// LocalFlowEnder is a FlowEnder in the caller's own process, such as
// controlpoint.LocalChecker: EndFlowAt never blocks, so the report needs
// no deadline, and it takes the end's time from the caller, who has read
// the clock already.
type LocalFlowEnder interface {
	EndFlowAt(now time.Time, id uint64, failed bool)
}

// flowEndTimeout bounds the report of a flow's end to a remote agent; a
// report that does not arrive is freed by the agent after the
// component's max_flow_duration.
const flowEndTimeout = time.Second

// EndFlow reports the end of the flow d admitted to c, when d holds a
// slot and c can take the report. It never blocks for long, and a report
// that fails is only lost: the agent frees the slot later.
func EndFlow(c Checker, d *flow.Decision, failed bool) {
	endFlow(c, d, failed, time.Time{})
}

// endFlow is EndFlow with the end's time, now, for a LocalFlowEnder (zero
// means time.Now).
func endFlow(c Checker, d *flow.Decision, failed bool, now time.Time) {
	id := d.FlowID
	if id == 0 {
		return
	}
	if le, ok := c.(LocalFlowEnder); ok { // no deadline (a context and a timer a flow) in process
		if now.IsZero() {
			now = time.Now()
		}
		le.EndFlowAt(now, id, failed)
		return
	}
	if fe, ok := c.(FlowEnder); ok {
		ctx, cancel := context.WithTimeout(context.Background(), flowEndTimeout)
		defer cancel()
		_ = fe.EndFlow(ctx, id, failed)
	}
}

// EndFlow reports the end of flow id to the agent.
func (r *Remote) EndFlow(ctx context.Context, id uint64, failed bool) error {
	_, err := r.c.FlowEnd(ctx, &pb.FlowEndRequest{FlowId: id, Failed: failed}, r.calls...)
	return err
}

// EndFlow passes the report on to the wrapped checker.
func (g *Guard) EndFlow(ctx context.Context, id uint64, failed bool) error {
	if fe, ok := g.next.(FlowEnder); ok {
		return fe.EndFlow(ctx, id, failed)
	}
	return nil
}
