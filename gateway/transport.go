package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"github.com/fluxgate/fluxgate/agent"
)

// transports are the pooled upstream transports, one per protocol an
// upstream group can ask for (upstreams[].http2, upstreams[].tls). They
// share the dialer that counts fluxgate_upstream_active_connections.
type transports struct {
	h1    *http.Transport // HTTP/1.1 over TCP, the default
	h2c   *http.Transport // HTTP/2 with prior knowledge over TCP
	h1tls *http.Transport // HTTP/1.1 over TLS
	h2tls *http.Transport // HTTP/2 over TLS (ALPN h2 required)
}

func newTransports(opts Options, dialer *net.Dialer, m *metrics) transports {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		gauge := m.connections.WithLabelValues(addr)
		gauge.Inc()
		return &countedConn{Conn: c, gauge: gauge}, nil
	}
	build := func(set func(*http.Protocols), tlsCfg *tls.Config) *http.Transport {
		p := new(http.Protocols)
		set(p)
		return &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			TLSClientConfig:       tlsCfg,
			Protocols:             p,
			MaxIdleConns:          4096,
			MaxIdleConnsPerHost:   512,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // pass encodings through untouched
		}
	}
	return transports{
		h1:    build(func(p *http.Protocols) { p.SetHTTP1(true) }, nil),
		h2c:   build(func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }, nil),
		h1tls: build(func(p *http.Protocols) { p.SetHTTP1(true) }, opts.UpstreamTLSConfig.Clone()),
		h2tls: build(func(p *http.Protocols) { p.SetHTTP2(true) }, opts.UpstreamTLSConfig.Clone()),
	}
}

// forUpstream returns the transport and URL scheme for uc.
func (ts transports) forUpstream(uc agent.UpstreamConfig) (http.RoundTripper, string) {
	switch {
	case uc.HTTP2 && uc.TLS:
		return ts.h2tls, "https"
	case uc.HTTP2:
		return ts.h2c, "http"
	case uc.TLS:
		return ts.h1tls, "https"
	}
	return ts.h1, "http"
}

func (ts transports) closeIdle() {
	for _, t := range []*http.Transport{ts.h1, ts.h2c, ts.h1tls, ts.h2tls} {
		t.CloseIdleConnections()
	}
}
