package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// RemoteOptions configures a Remote.
type RemoteOptions struct {
	// DialOptions are added after the defaults, so they override them. The
	// default is one option: insecure transport credentials (plain-text
	// HTTP/2, for an agent on the same host or pod). Pass
	// grpc.WithTransportCredentials to use TLS.
	DialOptions []grpc.DialOption
	// CallOptions are added to every Check call. Default none.
	CallOptions []grpc.CallOption
}

// Remote is a Checker that asks an agent's gRPC check service
// (fluxgate.flowcontrol.v1.FlowControlService/Check) over one persistent
// connection. Check is safe for concurrent use; all checks share the
// connection. Remote sets no deadline of its own: wrap it in a Guard.
type Remote struct {
	conn  *grpc.ClientConn
	c     pb.FlowControlServiceClient
	calls []grpc.CallOption
}

var _ Checker = (*Remote)(nil)

// NewRemote returns a Remote for target (a gRPC target such as
// "127.0.0.1:8081" or "dns:///agent:8081") and starts connecting at once,
// so the first check does not pay the connection setup. It does not wait
// for the connection: an agent that is down is not an error here, it is
// an error of each Check until the agent is up.
func NewRemote(target string, opts RemoteOptions) (*Remote, error) {
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts.DialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: agent %q: %w", target, err)
	}
	conn.Connect()
	return &Remote{conn: conn, c: pb.NewFlowControlServiceClient(conn), calls: opts.CallOptions}, nil
}

// Check asks the agent. ctx's deadline travels to the agent as
// grpc-timeout; cancelling ctx cancels the call.
func (r *Remote) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	return r.c.Check(ctx, req, r.calls...)
}

// Close closes the connection. Checks in flight fail.
func (r *Remote) Close() error {
	return r.conn.Close()
}
