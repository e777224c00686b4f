package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSOptions configures NewCertReloader.
type TLSOptions struct {
	// CertFile and KeyFile are the PEM pair to serve. Both required.
	CertFile, KeyFile string
	// PollInterval is how often Run looks at the files' size and
	// modification time. Default 2s.
	PollInterval time.Duration
	// HandshakeTimeout bounds a TLS handshake on a Listener. Default 10s.
	HandshakeTimeout time.Duration
	// Registerer receives the TLS metrics. Nil means none.
	Registerer prometheus.Registerer
	// Logger receives reloads and refused pairs. Nil means silent.
	Logger *slog.Logger
}

// CertReloader serves a certificate pair from files and reloads it when
// they change. Run polls the files; Reload checks them once. A new pair
// that does not load (unreadable, not PEM, key not matching) is refused:
// the previous pair keeps serving, the error is logged and counted in
// fluxgate_tls_certificate_reloads_total{result="failure"}, and it is
// tried again when either file changes again (so a pair written one file
// at a time loads once both are there).
//
// Handshakes are served through GetCertificate, so a reload applies to
// the next handshake; connections already established keep theirs.
// Listener measures handshakes into fluxgate_tls_handshake_duration_seconds.
// The served certificate's NotAfter is exported as
// fluxgate_tls_certificate_expiry_timestamp_seconds{server_name}, where
// server_name is the leaf's first DNS name, else its common name.
//
// A CertReloader is safe for concurrent use.
type CertReloader struct {
	opts   TLSOptions
	logger *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu         sync.Mutex // guards the fields below
	stamp      fileStamp  // of the files when last tried
	serverName string     // label of the current expiry series

	expiry    *prometheus.GaugeVec   // server_name
	reloads   *prometheus.CounterVec // result
	handshake prometheus.Histogram
	failed    prometheus.Counter
}

// fileStamp identifies a version of the pair without reading it.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// handshakeBuckets run from 0.5 ms to 1 s.
var handshakeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// NewCertReloader loads the pair; it fails when the pair does not load.
func NewCertReloader(opts TLSOptions) (*CertReloader, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("gateway: tls: cert_file and key_file are both required")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	c := &CertReloader{opts: opts, logger: opts.Logger}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.expiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fluxgate_tls_certificate_expiry_timestamp_seconds",
		Help: "NotAfter of the certificate the gateway serves, as a Unix timestamp, by its server name.",
	}, []string{"server_name"})
	c.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fluxgate_tls_certificate_reloads_total",
		Help: "Changes of the gateway's certificate files, by result: success, or failure when the new pair was refused and the previous one kept.",
	}, []string{"result"})
	c.handshake = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fluxgate_tls_handshake_duration_seconds",
		Help:    "Time from accepting a TCP connection to the end of its TLS handshake, for successful handshakes.",
		Buckets: handshakeBuckets,
	})
	c.failed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fluxgate_tls_handshake_errors_total",
		Help: "TLS handshakes that failed or timed out.",
	})
	stamp, err := c.statFiles()
	if err == nil {
		err = c.load(stamp)
	}
	if err != nil {
		return nil, err
	}
	if r := opts.Registerer; r != nil {
		var errs []error
		for _, col := range []prometheus.Collector{c.expiry, c.reloads, c.handshake, c.failed} {
			errs = append(errs, r.Register(col))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("gateway: tls: register metrics: %w", err)
		}
	}
	return c, nil
}

// Certificate is the pair being served.
func (c *CertReloader) Certificate() *tls.Certificate { return c.cert.Load() }

// GetCertificate is the tls.Config hook: the current pair for every
// handshake.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// TLSConfig is a server config that serves the current pair and offers
// HTTP/2 and HTTP/1.1 by ALPN.
func (c *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// Reload loads the pair if either file changed since it was last tried.
// It reports whether a new pair now serves; on error the previous one
// keeps serving.
func (c *CertReloader) Reload() (bool, error) {
	stamp, err := c.statFiles()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// A file being replaced may be missing for a moment: try again
		// at the next poll rather than latch on the error.
		return false, err
	}
	if stamp == c.stamp {
		return false, nil
	}
	c.stamp = stamp
	if err := c.loadLocked(); err != nil {
		c.reloads.WithLabelValues("failure").Inc()
		return false, err
	}
	c.reloads.WithLabelValues("success").Inc()
	return true, nil
}

// Run polls the files every PollInterval until ctx is done.
func (c *CertReloader) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed, err := c.Reload()
			switch {
			case err != nil:
				c.logger.Error("tls certificate not reloaded; the previous one keeps serving",
					"cert_file", c.opts.CertFile, "key_file", c.opts.KeyFile, "err", err)
			case changed:
				leaf := c.cert.Load().Leaf
				c.logger.Info("tls certificate reloaded", "cert_file", c.opts.CertFile,
					"server_name", serverName(leaf), "not_after", leaf.NotAfter)
			}
		}
	}
}

// Close deletes the TLS series from the Registerer.
func (c *CertReloader) Close() {
	if r := c.opts.Registerer; r != nil {
		for _, col := range []prometheus.Collector{c.expiry, c.reloads, c.handshake, c.failed} {
			r.Unregister(col)
		}
	}
}

func (c *CertReloader) statFiles() (fileStamp, error) {
	cs, err := os.Stat(c.opts.CertFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("gateway: tls: %w", err)
	}
	ks, err := os.Stat(c.opts.KeyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("gateway: tls: %w", err)
	}
	return fileStamp{certMod: cs.ModTime(), keyMod: ks.ModTime(), certSize: cs.Size(), keySize: ks.Size()}, nil
}

func (c *CertReloader) load(stamp fileStamp) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stamp = stamp
	return c.loadLocked()
}

// loadLocked reads the pair and swaps it in.
func (c *CertReloader) loadLocked() error {
	pair, err := tls.LoadX509KeyPair(c.opts.CertFile, c.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("gateway: tls: load %s and %s: %w", c.opts.CertFile, c.opts.KeyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("gateway: tls: parse %s: %w", c.opts.CertFile, err)
		}
	}
	c.cert.Store(&pair)
	name := serverName(pair.Leaf)
	if name != c.serverName {
		c.expiry.DeleteLabelValues(c.serverName)
		c.serverName = name
	}
	c.expiry.WithLabelValues(name).Set(float64(pair.Leaf.NotAfter.Unix()))
	return nil
}

// serverName labels a certificate: its first DNS name, else its common
// name.
func serverName(leaf *x509.Certificate) string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0]
	}
	return leaf.Subject.CommonName
}

// Listener serves TLS on inner with cfg (normally TLSConfig) and times
// each handshake. Handshakes run on their own goroutine as connections
// are accepted, bounded by HandshakeTimeout, so a slow client does not
// hold up others; Accept returns connections whose handshake is done, and
// http.Server, finding a *tls.Conn, serves HTTP/2 on those that
// negotiated h2. fluxgate_tls_handshake_duration_seconds measures from
// the TCP accept to the end of the handshake (the client's Finished
// read), so it includes the client's round trips; failed or timed-out
// handshakes count in fluxgate_tls_handshake_errors_total.
func (c *CertReloader) Listener(inner net.Listener, cfg *tls.Config) net.Listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &handshakeListener{
		Listener: inner, cfg: cfg, c: c, ctx: ctx, cancel: cancel,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

// handshakeListener is the Listener of CertReloader.
type handshakeListener struct {
	net.Listener
	cfg   *tls.Config
	c     *CertReloader
	conns chan net.Conn // handshaken
	errs  chan error    // from the inner Accept
	done  chan struct{} // closed by Close
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
	tc := tls.Server(raw, l.cfg)
	ctx, cancel := context.WithTimeout(l.ctx, l.c.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.c.failed.Inc()
		l.c.logger.Debug("tls handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		_ = raw.Close()
		return
	}
	l.c.handshake.Observe(time.Since(start).Seconds())
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
