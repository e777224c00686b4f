package agent

import (
	"errors"
	"fmt"
	"net"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/loophttp"
)

// The HTTP port on event loops (server.http_engine, issue 20): nginx's
// auth_request calls GET /v1/check/http once per request (and POST
// /v1/flow/end after it, with flow ends reported), the Python SDK POST
// /v1/check, on keep-alive connections that ask nothing else, and
// net/http spends about 17 µs of CPU on each, many times the decision.
// On Linux, plain or over TLS (the handshake on a goroutine, then the
// loop; HTTP/2 clients go to net/http), loophttp answers those calls on
// event loops through the same handler (a.mux: the check token, then the
// adapter), on the loop when the control point decides without waiting
// and on a goroutine when it may wait (Redis, a queue, Rego); every other
// request, and its connection from then on, goes to net/http (a.httpSrv)
// with the bytes read. Timeouts and the connection cap are the port's;
// the loops keep no spare P (eventloop.Options.NoSpareP), which made the
// gRPC port's checks dearer.

// newHTTPLoops builds a.httpSrv, and a.httpLoops when server.http_engine
// asks for loops and they can run here: auto wants Linux, loop fails to
// start without it.
func (a *Agent) newHTTPLoops(k *conncap.Cap) error {
	a.httpSrv = a.httpServer(a.mux)
	engine := a.cfg.Server.HTTPEngine
	if engine == "net" || a.check == nil {
		return nil
	}
	s := connLimits(a.cfg.Server)
	lp, err := loophttp.New(loophttp.Options{
		Handler:       a.mux,
		Serves:        func(method, path []byte) bool { return a.check.LoopRoute(string(method), string(path)) },
		Waits:         a.check.LoopMayWait,
		Fallback:      a.httpSrv,
		Cap:           k,
		HeaderTimeout: min(readHeaderTimeout, s.ReadTimeout),
		IdleTimeout:   s.IdleTimeout,
		WriteTimeout:  s.WriteTimeout,
		Logger:        a.logger,
	})
	switch {
	case err == nil:
		a.httpLoops = lp
	case engine == "loop":
		return fmt.Errorf("agent: server.http_engine loop: %w", err)
	case !errors.Is(err, loophttp.ErrUnsupported):
		a.logger.Warn("the HTTP port's event loops could not start; net/http serves it", "err", err)
	}
	return nil
}

// serveHTTPPort serves the HTTP port: raw on the loops, or capped (raw
// under the port's cap) with net/http.
func (a *Agent) serveHTTPPort(raw, capped net.Listener) {
	lp := a.httpLoops
	if lp == nil {
		a.serve(ListenerHTTP, a.tlsListener(ListenerHTTP, capped, a.httpSrv), a.httpSrv.Serve)
		return
	}
	a.logger.Info("the check API's /v1/check/http is served on event loops", "listener", ListenerHTTP)
	if a.tlsOn(ListenerHTTP) {
		a.serve(ListenerHTTP, a.loopTLSListener(ListenerHTTP, capped, a.httpSrv, "h2", "http/1.1"), lp.ServeTLS)
		return
	}
	a.serve(ListenerHTTP, raw, func(ln net.Listener) error {
		defer ln.Close()
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return fmt.Errorf("agent: the HTTP port's loops need a TCP listener, not %T", ln)
		}
		return lp.Serve(tl)
	})
}
