package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c" //nolint:staticcheck // SA1019: see frontend

	"github.com/fluxgate/fluxgate/certs"
)

// frontend sets up what clients speak to srv on *ln per cfg:
//
//   - gateway.tls set: *ln is replaced by a certs.Reloader's Listener, which
//     terminates TLS with the reloaded pair and offers h2 and http/1.1 by
//     ALPN, on wrap's wrapper of each connection when wrap is not nil (the
//     loop engine's); the returned Reloader must Run to follow file changes.
//   - gateway.h2c on a plain listener: srv.Handler accepts cleartext
//     HTTP/2, by prior knowledge or Upgrade: h2c, next to HTTP/1.1.
//
// Otherwise srv serves HTTP/1.1 and it returns nil.
func frontend(srv *http.Server, ln *net.Listener, cfg Config, reg prometheus.Registerer, logger *slog.Logger, wrap func(net.Conn) net.Conn) (*certs.Reloader, error) {
	if cfg.TLS.Enabled() {
		r, err := certs.New(certs.Options{
			Server:   "gateway",
			CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
			Registerer: reg, Logger: logger,
		})
		if err != nil {
			return nil, fmt.Errorf("gateway: tls: %w", err)
		}
		tc := r.TLSConfig()
		tc.NextProtos = cfg.TLS.nextProtos()
		srv.TLSConfig = tc
		*ln = r.WrappedListener(*ln, tc, "gateway", wrap)
		return r, nil
	}
	if cfg.H2C {
		// h2c is deprecated for http.Server.Protocols' unencrypted HTTP/2, but
		// that speaks prior knowledge only; h2c also serves Upgrade: h2c,
		// which gateway.h2c documents. TODO(issue 15): drop Upgrade: h2c or
		// keep this until net/http serves it.
		// ConfigureServer ties h2s to srv: srv.Shutdown then also ends the
		// HTTP/2 connections h2c took over (GOAWAY, then close once their
		// streams are done), which it does not track otherwise. Deprecated
		// with h2c, for the same reason; h2s takes srv's IdleTimeout.
		h2s := &http2.Server{}                                  //nolint:staticcheck // SA1019, as above
		if err := http2.ConfigureServer(srv, h2s); err != nil { //nolint:staticcheck // SA1019, as above
			return nil, fmt.Errorf("gateway: h2c: %w", err)
		}
		srv.Handler = h2c.NewHandler(srv.Handler, h2s) //nolint:staticcheck // SA1019, as above
	}
	return nil, nil
}
