package gateway

import (
	"log/slog"
	"net"

	"github.com/fluxgate/fluxgate/internal/h2"
)

// NewHTTP2Server returns the gateway's own HTTP/2 server for g (package
// internal/h2): it serves g, as the net/http engine would, to the TLS
// connections that chose HTTP/2, with h2's default limits, and counts the
// bounds it hits in fluxgate_gateway_http2_protocol_errors_total. A nil
// logger means silent.
func (g *Gateway) NewHTTP2Server(logger *slog.Logger) *h2.Server {
	return &h2.Server{
		Handler:         g,
		Logger:          logger,
		OnProtocolError: func(reason string) { g.metrics.h2errors.WithLabelValues(reason).Inc() },
		OnIdle: func(nc net.Conn, idle bool) {
			if idle {
				slotOf(nc).Idle()
			} else {
				slotOf(nc).Busy()
			}
		},
	}
}
