package client

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Flow label keys of gRPC flows.
const (
	LabelRPCMethod  = "rpc.method"  // full method, "/pkg.Service/Method"
	LabelRPCService = "rpc.service" // "pkg.Service"
	// LabelRPCMetadataPrefix + metadata key (lower case, as gRPC keeps it).
	LabelRPCMetadataPrefix = "rpc.request.metadata."
)

// Trailer metadata keys of a rejected call, the gRPC form of the HTTP
// decision headers.
const (
	TrailerDecision   = "x-fluxgate-decision" // "rejected"
	TrailerReason     = "x-fluxgate-reason"   // rate_limited, not_sampled, failed_closed, ...
	TrailerPolicy     = "x-fluxgate-policy"   // namespace/name of the deciding policy
	TrailerRetryAfter = "retry-after"         // whole seconds
)

// InterceptorOptions configures UnaryServerInterceptor.
type InterceptorOptions struct {
	// ControlPoint names where the check happens. Default "ingress".
	ControlPoint string
	// Labels returns extra flow labels for a call, added over the
	// built-in ones. Nil means none.
	Labels func(ctx context.Context, info *grpc.UnaryServerInfo, req any) map[string]string
	// Tokens returns the cost of a call. Nil means 1.
	Tokens func(ctx context.Context, info *grpc.UnaryServerInfo, req any) float64
}

// UnaryServerInterceptor checks every unary call with c before its
// handler runs. The flow labels are rpc.method (the full method),
// rpc.service, and each incoming metadata entry as
// rpc.request.metadata.<key> (values joined with ","; binary "-bin" keys
// and pseudo-headers are left out).
//
// The check uses the call's context, so a client that cancels cancels it.
// A rejected call fails with codes.ResourceExhausted (rate limited, no
// tokens), codes.PermissionDenied (not sampled) or codes.Unavailable
// (failed closed, and any other reason), and trailer metadata carrying
// the decision, reason, policy and retry-after. An admitted call reaches
// the handler with the decision in its context (FromContext), valid until
// the handler returns. An error
// from c fails the call with codes.Unavailable: pass a Guard to choose a
// failure mode instead.
func UnaryServerInterceptor(c Checker, opts InterceptorOptions) grpc.UnaryServerInterceptor {
	if opts.ControlPoint == "" {
		opts.ControlPoint = DefaultControlPoint
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		labels := rpcLabels(ctx, info.FullMethod)
		if opts.Labels != nil {
			for k, v := range opts.Labels(ctx, info, req) {
				labels[k] = v
			}
		}
		ch := newChecked()
		defer ch.release() // after the handler, which may read the decision (FromContext)
		ch.req = flow.Request{ControlPoint: opts.ControlPoint, Labels: labels}
		if opts.Tokens != nil {
			ch.req.Tokens = opts.Tokens(ctx, info, req)
		}
		d := &ch.d
		if err := c.Check(ctx, &ch.req, d); err != nil {
			if ctx.Err() != nil {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			return nil, status.Errorf(codes.Unavailable, "fluxgate: flow check failed: %v", err)
		}
		if !d.Accepted {
			return nil, rejectCall(ctx, d)
		}
		out, err := handler(newContext(ctx, d), req)
		EndFlow(c, d, failedCall(err))
		return out, err
	}
}

func rpcLabels(ctx context.Context, fullMethod string) map[string]string {
	md, _ := metadata.FromIncomingContext(ctx)
	labels := make(map[string]string, len(md)+2)
	for k, vs := range md {
		if len(vs) == 0 || strings.HasPrefix(k, ":") || strings.HasSuffix(k, "-bin") {
			continue
		}
		labels[LabelRPCMetadataPrefix+k] = strings.Join(vs, ",")
	}
	labels[LabelRPCMethod] = fullMethod
	svc := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(svc, '/'); i >= 0 {
		svc = svc[:i]
	}
	labels[LabelRPCService] = svc
	return labels
}

// rejectCall sets the trailer of a rejected call and returns its status.
func rejectCall(ctx context.Context, d *flow.Decision) error {
	reason := flow.ReasonLabel(d.Reason)
	md := metadata.Pairs(TrailerDecision, "rejected", TrailerReason, reason)
	msg := "fluxgate: " + reason
	if l := d.Rejector(); l != nil {
		policy := l.PolicyNamespace + "/" + l.PolicyName
		md.Set(TrailerPolicy, policy)
		msg += " by policy " + policy
	}
	if w := d.RetryAfter(); w > 0 {
		secs := int64(math.Ceil(w.Seconds()))
		md.Set(TrailerRetryAfter, strconv.FormatInt(secs, 10))
		msg += fmt.Sprintf(", retry after %ds", secs)
	}
	_ = grpc.SetTrailer(ctx, md) // fails only outside a server call; the status still says why
	code := codes.Unavailable
	switch d.Reason {
	case flow.ReasonRateLimited, flow.ReasonNoTokens:
		code = codes.ResourceExhausted
	case flow.ReasonNotSampled:
		code = codes.PermissionDenied
	}
	return status.Error(code, msg)
}

// failedCall reports whether a handler's error is the service's failure
// (as a 5xx is for HTTP), not the caller's.
func failedCall(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.FailedPrecondition, codes.OutOfRange, codes.Unauthenticated:
		return false
	}
	return true
}
