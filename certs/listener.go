package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// Listener serves TLS on inner with cfg (normally TLSConfig or
// ServerConfig) and times each handshake under the listener label name.
// Handshakes run on their own goroutine as connections are accepted,
// bounded by HandshakeTimeout, so a slow client does not hold up others
// and a client that never finishes its handshake is closed (with inner a
// connection-capped listener, its slot is freed); Accept returns
// connections whose handshake is done, and http.Server, finding a
// *tls.Conn, serves HTTP/2 on those that negotiated h2.
// fluxgate_tls_handshake_duration_seconds measures from the TCP accept to
// the end of the handshake (the client's Finished read), so it includes
// the client's round trips; failed or timed-out handshakes count in
// fluxgate_tls_handshake_errors_total.
func (r *Reloader) Listener(inner net.Listener, cfg *tls.Config, name string) net.Listener {
	return r.WrappedListener(inner, cfg, name, nil)
}

// WrappedListener is Listener with each accepted connection wrapped by
// wrap before TLS is built on it: the *tls.Conn it hands out reads and
// writes through what wrap returned (its NetConn), the handshake too. A
// server that moves a connection to its own I/O after the handshake
// (the gateway's loop engine) wraps it so. A failed handshake closes the
// connection accepted, not the wrapper. Nil wrap: Listener.
func (r *Reloader) WrappedListener(inner net.Listener, cfg *tls.Config, name string, wrap func(net.Conn) net.Conn) net.Listener {
	r.addListener(name)
	ctx, cancel := context.WithCancel(context.Background())
	l := &handshakeListener{
		Listener: inner, cfg: cfg, r: r, name: name, ctx: ctx, cancel: cancel, wrap: wrap,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

// GRPCCredentials are grpc-go's TLS credentials for cfg (normally
// ServerConfig; grpc-go adds and requires ALPN h2), measuring handshakes
// under the listener label name. The gRPC server bounds the handshake
// (grpc.ConnectionTimeout).
func (r *Reloader) GRPCCredentials(cfg *tls.Config, name string) credentials.TransportCredentials {
	r.addListener(name)
	return &measuredCreds{TransportCredentials: credentials.NewTLS(cfg), r: r, name: name}
}

// addListener creates the listener's series, so that they read 0 before
// the first handshake, and remembers the name for Close.
func (r *Reloader) addListener(name string) {
	r.m.handshake.WithLabelValues(name)
	r.m.failed.WithLabelValues(name)
	r.mu.Lock()
	r.listeners[name] = true
	r.mu.Unlock()
}

// observe records one handshake that began at start.
func (r *Reloader) observe(name string, start time.Time, err error, remote net.Addr) {
	if err != nil {
		r.m.failed.WithLabelValues(name).Inc()
		r.logger.Debug("tls handshake failed", "listener", name, "remote", remote.String(), "err", err)
		return
	}
	r.m.handshake.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// measuredCreds are TLS credentials that measure server handshakes.
type measuredCreds struct {
	credentials.TransportCredentials
	r    *Reloader
	name string
}

func (c *measuredCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	start := time.Now()
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	c.r.observe(c.name, start, err, raw.RemoteAddr())
	return conn, info, err
}

func (c *measuredCreds) Clone() credentials.TransportCredentials {
	return &measuredCreds{TransportCredentials: c.TransportCredentials.Clone(), r: c.r, name: c.name}
}

// handshakeListener is the Listener of Reloader.
type handshakeListener struct {
	net.Listener
	cfg   *tls.Config
	r     *Reloader
	name  string
	wrap  func(net.Conn) net.Conn // nil: none
	conns chan net.Conn           // handshaken
	errs  chan error              // from the inner Accept
	done  chan struct{}           // closed by Close
	once  sync.Once

	ctx    context.Context // of handshakes in progress; canceled by Close
	cancel context.CancelFunc
}

func (l *handshakeListener) acceptLoop() {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go l.handshake(raw)
	}
}

func (l *handshakeListener) handshake(raw net.Conn) {
	start := time.Now()
	under := raw
	if l.wrap != nil {
		under = l.wrap(raw)
	}
	tc := tls.Server(under, l.cfg)
	ctx, cancel := context.WithTimeout(l.ctx, l.r.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	l.r.observe(l.name, start, err, raw.RemoteAddr())
	if err != nil {
		_ = raw.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handshakeListener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		l.cancel()
		err = l.Listener.Close()
	})
	return err
}
