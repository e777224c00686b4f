package agent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/loopgrpc"
)

// The gRPC port on event loops (server.grpc_engine, issue 20): SDKs and
// gateways call a check once per request (and report its end), and
// grpc-go spends 13–16 µs of CPU on each, ten times the decision. On
// Linux loopgrpc answers those calls
// (FlowControlService's Check and FlowEnd, Aperture's, Envoy's ext_authz
// Check: server.LoopMethods) on event loops — guarded by the tokens as
// the tap handle guards the port, decided on the loop, or on a goroutine
// when the control point may wait — and hands every other call (health,
// OTLP spans, access logs) to grpc-go through its ServeHTTP, behind the
// same tap handle (a.grpcTap: tokens, the OTLP export slots), on the
// same connection. The port's timeouts, connection cap, stream bound and
// maximum connection age are grpc-go's here too. With TLS on the port
// (tls.cert_file), the handshake runs on a goroutine under the port's
// tls settings (certs' listener: client certificates, minimum version,
// handshake timeout) and the connection then moves to a loop
// (loopgrpc.ServeTLS).

// newGRPCLoops builds a.grpcLoops when server.grpc_engine asks for loops
// and they can run here: auto wants Linux, loop fails to start without
// it.
func (a *Agent) newGRPCLoops(k *conncap.Cap) error {
	engine := a.cfg.Server.GRPCEngine
	if engine == "net" || a.check == nil {
		return nil
	}
	s := connLimits(a.cfg.Server)
	lp, err := loopgrpc.New(loopgrpc.Options{
		Unary:                 a.loopMethods(),
		Fallback:              http.HandlerFunc(a.grpcFallback),
		H2:                    &h2.Server{MaxConcurrentStreams: grpcMaxStreams},
		MaxRecvMsgSize:        grpcMaxCheckMsg,
		Cap:                   k,
		PrefaceTimeout:        min(readHeaderTimeout, s.ReadTimeout),
		IdleTimeout:           s.IdleTimeout,
		WriteTimeout:          s.WriteTimeout,
		MaxConnectionAge:      grpcMaxConnAge,
		MaxConnectionAgeGrace: grpcMaxAgeGrace,
		Logger:                a.logger,
	})
	switch {
	case err == nil:
		a.grpcLoops = lp
	case engine == "loop":
		return fmt.Errorf("agent: server.grpc_engine loop: %w", err)
	case !errors.Is(err, loopgrpc.ErrUnsupported):
		a.logger.Warn("the gRPC port's event loops could not start; grpc-go serves it", "err", err)
	}
	return nil
}

// loopMethods are the check API's calls answered on the loops, each
// behind the port's tokens.
func (a *Agent) loopMethods() map[string]loopgrpc.Unary {
	us := map[string]loopgrpc.Unary{}
	for name, m := range a.check.LoopMethods() {
		us[name] = func(c *loopgrpc.Call) (loopgrpc.Answer, error) {
			if err := a.grpcGuards.refuse(c.Method, c.Field); err != nil {
				return loopgrpc.Answer{}, err
			}
			run, waits, err := m(c.Msg)
			return loopgrpc.Answer{Run: run, Waits: waits}, err
		}
	}
	return us
}

// grpcFallback serves the calls the loops hand over with grpc-go, after
// the port's tap handle, which grpc-go's ServeHTTP does not run.
func (a *Agent) grpcFallback(w http.ResponseWriter, r *http.Request) {
	md := make(metadata.MD, len(r.Header))
	for k, vs := range r.Header {
		md[strings.ToLower(k)] = vs
	}
	ctx, err := a.grpcTap(r.Context(), &tap.Info{FullMethodName: r.URL.Path, Header: md})
	if err != nil {
		loopgrpc.Refuse(w, err)
		return
	}
	a.grpc.ServeHTTP(w, r.WithContext(ctx))
}

// serveGRPCPort serves the gRPC port: raw on the loops, or capped with
// grpc-go.
func (a *Agent) serveGRPCPort(raw, capped net.Listener) {
	lp := a.grpcLoops
	if lp == nil {
		a.serve(ListenerGRPC, capped, a.grpc.Serve)
		return
	}
	a.logger.Info("the check calls of the gRPC port are served on event loops", "listener", ListenerGRPC)
	if a.tlsOn(ListenerGRPC) {
		a.serve(ListenerGRPC, a.loopTLSListener(ListenerGRPC, capped, nil, "h2"), lp.ServeTLS)
		return
	}
	a.serve(ListenerGRPC, raw, func(ln net.Listener) error {
		defer ln.Close()
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return fmt.Errorf("agent: the gRPC port's loops need a TCP listener, not %T", ln)
		}
		return lp.Serve(tl)
	})
}
