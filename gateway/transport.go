package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
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

func newTransports(opts Options, dial func(ctx context.Context, network, addr string) (net.Conn, error)) transports {
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
func (ts transports) forUpstream(uc UpstreamConfig) (http.RoundTripper, string) {
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

// dialUpstream connects to a target, counting the connection in
// fluxgate_upstream_active_connections until it closes. With firstByte >
// 0, every request written on it must see the first bytes of its
// response within firstByte (see upstreamConn). With tlsCfg it also does
// the TLS handshake (within the dial timeout), under the first-byte
// watch, so that only response data counts as the answer: TLS 1.3
// session tickets arrive before it.
func (g *Gateway) dialUpstream(ctx context.Context, network, addr string, firstByte time.Duration, tlsCfg *tls.Config) (net.Conn, error) {
	c, err := g.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		cfg := tlsCfg
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(c, cfg)
		hctx, cancel := context.WithTimeout(ctx, g.opts.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Addr: c.RemoteAddr(), Err: err}
		}
		c = tc
	}
	gauge := g.metrics.connections.WithLabelValues(addr)
	gauge.Inc()
	uc := &upstreamConn{Conn: c, gauge: gauge, firstByte: firstByte}
	if tlsCfg != nil {
		return tlsUpstreamConn{uc}, nil
	}
	return uc, nil
}

// tlsUpstreamConn is an upstreamConn over a TLS connection whose handshake
// is done; its Handshake method tells the fast client not to wrap it again.
type tlsUpstreamConn struct{ *upstreamConn }

func (tlsUpstreamConn) Handshake() error { return nil }

// upstreamConn is a connection to a target. It decrements
// fluxgate_upstream_active_connections once, on Close. With firstByte >
// 0, each write (a request going out) sets a read deadline firstByte
// ahead, and the first bytes read (the response arriving) clear it: the
// wait for a response is bounded, not the time a body streams. The fast
// engine's clients, which set firstByte and peek, use it from one
// goroutine at a time; net/http's (firstByte 0, no peek) may read and
// write at once, and then neither field is touched.
type upstreamConn struct {
	net.Conn
	gauge     prometheus.Gauge
	once      sync.Once
	firstByte time.Duration
	armed     bool

	// peek, when set, looks at the connection before the first write of a
	// request on it that follows an answer (answered): a connection the
	// target closed or sent more bytes on since is not written to (see
	// peeker), so those bytes are never read as this request's answer.
	// The fast engine's clients set it; the lean pool looks itself.
	peek     *peeker
	answered bool
}

// errDirtyConn: a pooled connection had bytes to read or was closed by
// the target before a request was written on it. It wraps
// fasthttp.ErrConnectionClosed, so that the fast client sends an
// idempotent request once more on a new connection (retryStale).
var errDirtyConn = fmt.Errorf("gateway: the target closed the pooled connection or sent bytes on it unasked: %w", fasthttp.ErrConnectionClosed)

func (c *upstreamConn) Write(p []byte) (int, error) {
	// Only the fast engine's connections (peek set) are looked at; the
	// others may be read and written at once (HTTP/2), so answered is
	// left alone there.
	if c.peek != nil && c.answered {
		c.answered = false
		if c.peek.idleReadable() {
			_ = c.Close()
			return 0, errDirtyConn
		}
	}
	if c.firstByte > 0 {
		c.armed = true
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.firstByte))
	}
	return c.Conn.Write(p)
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.peek != nil {
		c.answered = true
	}
	if c.armed && n > 0 {
		c.armed = false
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	return n, err
}

// SetReadDeadline keeps the first-byte deadline while it is armed: the
// fast client clears the read deadline after writing a request when it
// has no timeout of its own.
func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	if c.armed && t.IsZero() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *upstreamConn) Close() error {
	c.once.Do(c.gauge.Dec)
	return c.Conn.Close()
}

// UpstreamTLS builds the client TLS config of c (gateway.upstream_tls) for
// Options.UpstreamTLSConfig: nil when c is empty (the system roots). A
// file that does not load is an error naming it.
func UpstreamTLS(c UpstreamTLSConfig) (*tls.Config, error) {
	if c.IsZero() {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("gateway.upstream_tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gateway.upstream_tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("gateway.upstream_tls: cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
