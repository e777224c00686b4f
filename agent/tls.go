package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// TLS on the agent's own listeners (issue 14).
//
// With tls.cert_file and tls.key_file, every listener serves TLS only:
// the HTTP API and OTLP/HTTP (HTTP/2 and HTTP/1.1 by ALPN), gRPC and
// OTLP/gRPC (grpc-go's TLS credentials, ALPN h2), and metrics unless
// metrics.tls is false. A plain-text client fails its handshake and is
// disconnected; nothing falls back to plain text. With tls.client_ca_file
// the listeners also verify client certificates (mutual TLS), as
// tls.client_auth says. The pair and the CA file are one certs.Reloader,
// polled every 2s: a change that loads applies to the next handshake, one
// that does not keeps the previous files (logged, counted in
// fluxgate_tls_certificate_reloads_total{server="agent"}).
//
// A handshake must end within tls.handshake_timeout: on HTTP listeners
// the certs.Listener closes a connection that has not finished by then,
// on gRPC listeners grpc.ConnectionTimeout does (it also covers the
// HTTP/2 preface). Both sit above the connection cap (conns.go), so a
// stalled handshake holds one slot for at most that long.

// TLSConfig is TLS on the agent's listeners (tls section). The cross-key
// rules (key with certificate, CA file with both) and the files are
// checked when the agent is built (New), not by Validate, so that `config
// set` can write the keys one at a time.
type TLSConfig struct {
	CertFile         string        `yaml:"cert_file" desc:"PEM certificate chain the agent serves; with key_file turns on TLS on every listener (HTTP API, gRPC, OTLP gRPC and HTTP, and metrics unless metrics.tls is false) and plain-text clients are refused. Reloaded when the file changes. Empty (with key_file) means plain text."`
	KeyFile          string        `yaml:"key_file" desc:"PEM private key of cert_file."`
	ClientCAFile     string        `yaml:"client_ca_file" desc:"PEM CA certificates that verify client certificates (mutual TLS) per client_auth, on every TLS listener; needs cert_file and key_file. Reloaded when the file changes. Empty asks clients for no certificate."`
	ClientAuth       string        `yaml:"client_auth" validate:"oneof=require|verify_if_given" desc:"With client_ca_file: require refuses a client without a certificate from those CAs; verify_if_given also lets in clients that present none (kubelet probes, scrapers) and refuses those whose certificate does not verify, so the tokens must then guard the check API and OTLP."`
	MinVersion       string        `yaml:"min_version" validate:"oneof=tls1.2|tls1.3" desc:"Lowest TLS version the listeners accept (written as Caddy does, so YAML reads it as a string)."`
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" desc:"A client must finish its TLS handshake within this time or is disconnected (on the gRPC port served by grpc-go, server.grpc_engine net: handshake and HTTP/2 preface together; on the event loops the preface, or a request's head, then has server.read_timeout, at most 10s); 0 or less means 10s."`
}

// Values of tls.client_auth.
const (
	ClientAuthRequire       = "require"
	ClientAuthVerifyIfGiven = "verify_if_given"
)

// Enabled reports whether TLS is configured (both files, or one, which
// check refuses).
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// ClientCerts reports whether clients are asked for certificates.
func (c TLSConfig) ClientCerts() bool { return c.Enabled() && c.ClientCAFile != "" }

// check reports the rules across keys, each naming its key.
func (c TLSConfig) check() error {
	var errs []error
	checkPair(c.CertFile, c.KeyFile, func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("tls.%s: %s", key, fmt.Sprintf(format, args...)))
	})
	if c.ClientCAFile != "" && !c.Enabled() {
		errs = append(errs, errors.New("tls.client_ca_file: needs tls.cert_file and tls.key_file (client certificates are verified during a TLS handshake)"))
	}
	return errors.Join(errs...)
}

func (c TLSConfig) clientAuth() tls.ClientAuthType {
	if c.ClientAuth == ClientAuthVerifyIfGiven {
		return tls.VerifyClientCertIfGiven
	}
	return tls.RequireAndVerifyClientCert
}

func (c TLSConfig) minVersion() uint16 {
	if c.MinVersion == "tls1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

func (c TLSConfig) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout <= 0 {
		return DefaultConfig().TLS.HandshakeTimeout
	}
	return c.HandshakeTimeout
}

// newCerts loads the TLS files, or returns nil when TLS is off. Errors
// name the keys and the files.
func (a *Agent) newCerts() (*certs.Reloader, error) {
	c := a.cfg.TLS
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if !c.Enabled() {
		return nil, nil
	}
	r, err := certs.New(certs.Options{
		Server:   "agent",
		CertFile: c.CertFile, KeyFile: c.KeyFile, ClientCAFile: c.ClientCAFile,
		HandshakeTimeout: c.handshakeTimeout(),
		Registerer:       a.registry, Logger: a.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: tls (cert_file %s, key_file %s, client_ca_file %q): %w", c.CertFile, c.KeyFile, c.ClientCAFile, err)
	}
	return r, nil
}

// grpcTLS are the options that serve gRPC listener name over TLS; none
// while TLS is off.
func (a *Agent) grpcTLS(name string) []grpc.ServerOption {
	if a.certs == nil {
		return nil
	}
	c := a.cfg.TLS
	s := connLimits(a.cfg.Server)
	return []grpc.ServerOption{
		grpc.Creds(a.certs.GRPCCredentials(a.serverTLS("h2"), name)),
		// After grpcOptions' ConnectionTimeout, so it replaces it.
		grpc.ConnectionTimeout(min(readHeaderTimeout, s.ReadTimeout, c.handshakeTimeout())),
	}
}

// tlsListener serves TLS on ln for HTTP server srv when TLS is on for
// listener name; otherwise it returns ln.
func (a *Agent) tlsListener(name string, ln net.Listener, srv *http.Server) net.Listener {
	if !a.tlsOn(name) {
		return ln
	}
	srv.TLSConfig = a.serverTLS("h2", "http/1.1")
	return a.certs.Listener(ln, srv.TLSConfig, name)
}

// loopTLSListener serves TLS on ln, listener name, for its event loops:
// the handshakes as tlsListener's, each connection built on looptls.Wrap
// so that a loop can take it. srv, if set, is the port's net/http
// server, which serves HTTP/2 clients and what the loops hand over.
func (a *Agent) loopTLSListener(name string, ln net.Listener, srv *http.Server, nextProtos ...string) net.Listener {
	cfg := a.serverTLS(nextProtos...)
	if srv != nil {
		srv.TLSConfig = cfg
	}
	return a.certs.WrappedListener(ln, cfg, name, looptls.Wrap)
}

// serverTLS is the listeners' TLS configuration (the tls section),
// offering nextProtos by ALPN.
func (a *Agent) serverTLS(nextProtos ...string) *tls.Config {
	c := a.cfg.TLS
	return a.certs.ServerConfig(c.clientAuth(), c.minVersion(), nextProtos...)
}

// tlsOn reports whether listener name serves TLS.
func (a *Agent) tlsOn(name string) bool {
	if a.certs == nil {
		return false
	}
	switch name {
	case ListenerProbe:
		return false // kubelet probes speak plain HTTP; the listener serves health only
	case ListenerMetrics:
		return a.cfg.Metrics.TLS
	}
	return true
}

// logTLS logs, once at start, which listeners serve TLS and whether they
// ask for client certificates.
func (a *Agent) logTLS() {
	var tlsOn, plain []string
	for _, name := range listenerNames {
		if a.Addr(name) == nil {
			continue
		}
		if a.tlsOn(name) {
			tlsOn = append(tlsOn, name)
		} else {
			plain = append(plain, name)
		}
	}
	c := a.cfg.TLS
	switch {
	case a.certs == nil:
		a.logger.Info("listeners serve plain text: tokens and traffic travel in clear", "surface", "transport", "plain", plain,
			"protect", "set tls.cert_file and tls.key_file (TLS), and tls.client_ca_file (mutual TLS)")
	case !c.ClientCerts():
		a.logger.Info("TLS on, no client certificates", "surface", "transport", "tls", tlsOn, "plain", plain,
			"cert_file", c.CertFile, "min_version", c.MinVersion)
	case c.ClientAuth == ClientAuthVerifyIfGiven:
		a.logger.Info("TLS on, client certificates verified when given (clients without one get in)", "surface", "transport",
			"tls", tlsOn, "plain", plain, "cert_file", c.CertFile, "client_ca_file", c.ClientCAFile, "min_version", c.MinVersion)
	default:
		a.logger.Info("mutual TLS: client certificate required", "surface", "transport", "tls", tlsOn, "plain", plain,
			"cert_file", c.CertFile, "client_ca_file", c.ClientCAFile, "min_version", c.MinVersion)
	}
}

// certRequired reports whether every client of listener name must
// present a verified certificate.
func (a *Agent) certRequired(name string) bool {
	return a.tlsOn(name) && a.cfg.TLS.ClientCerts() && a.cfg.TLS.ClientAuth == ClientAuthRequire
}

// withoutCertRequired is surfaces (as logSurfaces names them) without
// those whose every port requires a client certificate.
func (a *Agent) withoutCertRequired(surfaces []string) []string {
	ports := map[string][]string{
		"check":      {ListenerHTTP, ListenerGRPC},
		"otlp":       {ListenerOTLPGRPC, ListenerOTLPHTTP},
		"monitoring": {ListenerHTTP, ListenerGRPC, ListenerMetrics},
	}
	var out []string
	for _, s := range surfaces {
		if ports[s] == nil {
			out = append(out, s)
		}
		for _, name := range ports[s] {
			if a.Addr(name) != nil && !a.certRequired(name) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// checkPair reports a certificate without its key or a key without its
// certificate.
func checkPair(certFile, keyFile string, bad func(key, format string, args ...any)) {
	switch {
	case certFile != "" && keyFile == "":
		bad("key_file", "must be set with cert_file")
	case certFile == "" && keyFile != "":
		bad("cert_file", "must be set with key_file")
	}
}
