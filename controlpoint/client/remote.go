package client

import (
	"context"
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// RemoteOptions configures a Remote.
type RemoteOptions struct {
	// TLS connects to the agent over TLS with this config (an agent with
	// tls.cert_file): RootCAs verify the agent (nil: the system roots),
	// Certificates or GetClientCertificate present a client certificate
	// to an agent with tls.client_ca_file (mutual TLS), ServerName
	// overrides the target's host. Nil means plain text (plain-text
	// HTTP/2, for an agent on the same host or pod), which an agent with
	// TLS refuses.
	TLS *tls.Config
	// DialOptions are added after the defaults (the transport credentials
	// TLS implies, the Token), so they override them.
	DialOptions []grpc.DialOption
	// CallOptions are added to every Check call. Default none.
	CallOptions []grpc.CallOption
	// Token is the agent's check.token, sent with every call as the
	// metadata authorization: Bearer <Token>. It is sent over plain-text
	// connections too, so keep those on loopback or a trusted cluster
	// network (or set TLS). Empty sends none,
	// for an agent whose check API is open.
	Token string
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
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if opts.Token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer(opts.Token)))
	}
	dial = append(dial, opts.DialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: agent %q: %w", target, err)
	}
	conn.Connect()
	return &Remote{conn: conn, c: pb.NewFlowControlServiceClient(conn), calls: opts.CallOptions}, nil
}

// Check asks the agent: req goes out as the check API's request
// (ControlPoint, Labels and Tokens; the API carries no NoFlowEnd or
// RampMode) and the answer comes back into d (flow.Decision.FromProto).
// ctx's deadline travels to the agent as grpc-timeout; cancelling ctx
// cancels the call.
func (r *Remote) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	resp, err := r.c.Check(ctx, &pb.CheckRequest{ControlPoint: req.ControlPoint, Labels: req.Labels, Tokens: req.Tokens}, r.calls...)
	if err != nil {
		return err
	}
	d.FromProto(resp)
	return nil
}

// Close closes the connection. Checks in flight fail.
func (r *Remote) Close() error {
	return r.conn.Close()
}

// bearer is a token sent as the authorization metadata of every call. It
// does not require transport security: the agent's ports speak plain
// text (the token keeps out whoever reaches them without it, not whoever
// reads the traffic).
type bearer string

var _ credentials.PerRPCCredentials = bearer("")

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
