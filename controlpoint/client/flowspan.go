package client

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// FlowSpan records one flow: the attributes of the Flux Meter span
// convention (see the fluxmeter package), with the workload duration
// measured around the handler.
func FlowSpan(tr trace.Tracer, ctx context.Context, method, path, target, cp string, d *flow.Decision, status int, start, end time.Time) {
	_, sp := tr.Start(ctx, method+" "+path, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer))
	sp.SetAttributes(
		attribute.String(flow.AttrControlPoint, cp),
		attribute.StringSlice(flow.AttrFluxMeters, d.FluxMeters),
		attribute.String(flow.AttrDecisionType, d.DecisionType().String()),
		attribute.Int(flow.AttrHTTPStatus, status),
		attribute.Float64(flow.AttrWorkloadMillis, float64(end.Sub(start))/1e6),
		attribute.String("http.target", target),
		attribute.String("http.method", method),
		attribute.String("url.path", path),
		attribute.String("http.request.method", method),
	)
	sp.End(trace.WithTimestamp(end))
}
