package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures New.
type Options struct {
	// Server names whose certificate this is in the metrics (label
	// server: "agent", "gateway"). Required.
	Server string
	// CertFile and KeyFile are the PEM pair to serve. Both required.
	CertFile, KeyFile string
	// ClientCAFile holds the PEM CA certificates that verify client
	// certificates (see ServerConfig). Empty means none: clients are not
	// asked for certificates. Reloaded with the pair.
	ClientCAFile string
	// PollInterval is how often Run looks at the files' size and
	// modification time. Default 2s.
	PollInterval time.Duration
	// HandshakeTimeout bounds a TLS handshake on a Listener. Default 10s.
	HandshakeTimeout time.Duration
	// Registerer receives the TLS metrics. Nil means none. Several
	// Reloaders may share one: the metrics are registered once and each
	// Reloader writes its own series.
	Registerer prometheus.Registerer
	// Logger receives reloads and refused files. Nil means silent.
	Logger *slog.Logger
}

// Reloader serves a certificate pair, and the CAs that verify clients,
// from files and reloads them when they change. Run polls the files;
// Reload checks them once. New files that do not load (unreadable, not
// PEM, key not matching, a CA file without certificates) are refused: the
// previous pair and CAs keep serving, the error is logged and counted in
// fluxgate_tls_certificate_reloads_total{result="failure"}, and they are
// tried again when a file changes again (so a pair written one file at a
// time loads once both are there).
//
// Handshakes are served through GetCertificate (and GetConfigForClient
// for the CAs), so a reload applies to the next handshake; connections
// already established keep theirs. The served certificate's NotAfter is
// exported as fluxgate_tls_certificate_expiry_timestamp_seconds{server,
// server_name}, where server_name is the leaf's first DNS name, else its
// common name.
//
// A Reloader is safe for concurrent use.
type Reloader struct {
	opts   Options
	logger *slog.Logger
	m      *metrics

	cert atomic.Pointer[tls.Certificate]
	cas  atomic.Pointer[x509.CertPool] // nil without ClientCAFile

	mu         sync.Mutex      // guards the fields below
	stamp      fileStamp       // of the files when last tried
	serverName string          // label of the current expiry series
	listeners  map[string]bool // names given to Listener and GRPCCredentials
}

// fileStamp identifies a version of the files without reading them.
type fileStamp struct {
	certMod, keyMod, caMod    time.Time
	certSize, keySize, caSize int64
}

// New loads the files; it fails when they do not load, naming the file
// and what is wrong with it.
func New(opts Options) (*Reloader, error) {
	switch {
	case opts.Server == "":
		return nil, errors.New("certs: Options.Server is required")
	case opts.CertFile == "" || opts.KeyFile == "":
		return nil, errors.New("certs: a certificate file and a key file are both required")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	r := &Reloader{opts: opts, logger: opts.Logger, listeners: make(map[string]bool)}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r.m = m
	stamp, err := r.statFiles()
	if err == nil {
		err = r.load(stamp)
	}
	if err != nil {
		return nil, err
	}
	for _, result := range []string{"success", "failure"} {
		r.m.reloads.WithLabelValues(opts.Server, result)
	}
	return r, nil
}

// Certificate is the pair being served.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// ClientCAs is the pool that verifies client certificates, nil without
// Options.ClientCAFile.
func (r *Reloader) ClientCAs() *x509.CertPool { return r.cas.Load() }

// GetCertificate is the tls.Config hook: the current pair for every
// handshake.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// TLSConfig is a server config that serves the current pair and offers
// HTTP/2 and HTTP/1.1 by ALPN, asking no client certificate.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// ServerConfig is a server config that serves the current pair from
// minVersion (0 means TLS 1.2) and offers nextProtos by ALPN. With
// Options.ClientCAFile, clients are asked for a certificate per auth
// (tls.RequireAndVerifyClientCert, tls.VerifyClientCertIfGiven), verified
// against the CAs current at each handshake; without it auth is ignored.
func (r *Reloader) ServerConfig(auth tls.ClientAuthType, minVersion uint16, nextProtos ...string) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	cfg := &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: r.GetCertificate,
		NextProtos:     nextProtos,
	}
	if r.opts.ClientCAFile == "" {
		return cfg
	}
	cfg.ClientAuth = auth
	tmpl := cfg.Clone()
	cfg.ClientCAs = r.cas.Load() // for code that reads the config
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := tmpl.Clone()
		c.ClientCAs = r.cas.Load()
		return c, nil
	}
	return cfg
}

// Reload loads the files if any changed since they were last tried. It
// reports whether new ones now serve; on error the previous ones keep
// serving.
func (r *Reloader) Reload() (bool, error) {
	stamp, err := r.statFiles()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// A file being replaced may be missing for a moment: try again
		// at the next poll rather than latch on the error.
		return false, err
	}
	if stamp == r.stamp {
		return false, nil
	}
	r.stamp = stamp
	if err := r.loadLocked(); err != nil {
		r.m.reloads.WithLabelValues(r.opts.Server, "failure").Inc()
		return false, err
	}
	r.m.reloads.WithLabelValues(r.opts.Server, "success").Inc()
	return true, nil
}

// Run polls the files every PollInterval until ctx is done.
func (r *Reloader) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed, err := r.Reload()
			switch {
			case err != nil:
				r.logger.Error("tls certificate not reloaded; the previous one keeps serving", "server", r.opts.Server,
					"cert_file", r.opts.CertFile, "key_file", r.opts.KeyFile, "client_ca_file", r.opts.ClientCAFile, "err", err)
			case changed:
				leaf := r.cert.Load().Leaf
				r.logger.Info("tls certificate reloaded", "server", r.opts.Server, "cert_file", r.opts.CertFile,
					"server_name", serverName(leaf), "not_after", leaf.NotAfter)
			}
		}
	}
}

// Close deletes this Reloader's series from the metrics; the metrics stay
// registered for other Reloaders of the Registerer.
func (r *Reloader) Close() {
	r.m.expiry.DeletePartialMatch(prometheus.Labels{"server": r.opts.Server})
	r.m.reloads.DeletePartialMatch(prometheus.Labels{"server": r.opts.Server})
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.listeners {
		r.m.handshake.DeleteLabelValues(name)
		r.m.failed.DeleteLabelValues(name)
	}
}

func (r *Reloader) statFiles() (fileStamp, error) {
	var s fileStamp
	cs, err := os.Stat(r.opts.CertFile)
	if err != nil {
		return s, fmt.Errorf("certs: certificate file: %w", err)
	}
	ks, err := os.Stat(r.opts.KeyFile)
	if err != nil {
		return s, fmt.Errorf("certs: key file: %w", err)
	}
	s = fileStamp{certMod: cs.ModTime(), keyMod: ks.ModTime(), certSize: cs.Size(), keySize: ks.Size()}
	if r.opts.ClientCAFile != "" {
		ca, err := os.Stat(r.opts.ClientCAFile)
		if err != nil {
			return fileStamp{}, fmt.Errorf("certs: client CA file: %w", err)
		}
		s.caMod, s.caSize = ca.ModTime(), ca.Size()
	}
	return s, nil
}

func (r *Reloader) load(stamp fileStamp) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamp = stamp
	return r.loadLocked()
}

// loadLocked reads the files and swaps them in, all or none.
func (r *Reloader) loadLocked() error {
	pair, err := tls.LoadX509KeyPair(r.opts.CertFile, r.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("certs: load %s and %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("certs: parse %s: %w", r.opts.CertFile, err)
		}
	}
	var pool *x509.CertPool
	if r.opts.ClientCAFile != "" {
		if pool, err = LoadCertPool(r.opts.ClientCAFile); err != nil {
			return err
		}
	}
	r.cert.Store(&pair)
	r.cas.Store(pool)
	name := serverName(pair.Leaf)
	if name != r.serverName {
		r.m.expiry.DeleteLabelValues(r.opts.Server, r.serverName)
		r.serverName = name
	}
	r.m.expiry.WithLabelValues(r.opts.Server, name).Set(float64(pair.Leaf.NotAfter.Unix()))
	return nil
}

// LoadCertPool reads a PEM file of CA certificates. A file without any
// certificate is an error.
func LoadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("certs: CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// serverName labels a certificate: its first DNS name, else its common
// name.
func serverName(leaf *x509.Certificate) string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0]
	}
	return leaf.Subject.CommonName
}
