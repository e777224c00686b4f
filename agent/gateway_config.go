package agent

import "time"

// CanaryMetricsConfig is what a route's canary must meet to keep its
// traffic (gateway.routes[].canary.metrics). Over the last Window, with at
// least MinSamples canary requests, the canary fails when its 5xx-or-error
// ratio exceeds TargetErrorRate or its p99 latency exceeds
// TargetP99Latency; it then rolls back to weight 0. Fewer samples are no
// data, which never promotes. Zero fields take the defaults package
// gateway documents.
type CanaryMetricsConfig struct {
	TargetErrorRate  float64       `yaml:"target_error_rate,omitempty"`  // 0..1; 0: errors not judged
	TargetP99Latency time.Duration `yaml:"target_p99_latency,omitempty"` // 0: latency not judged
	MinSamples       int           `yaml:"min_samples,omitempty"`        // default 50
	Window           time.Duration `yaml:"window,omitempty"`             // default 30s
}

// check reports every invalid value of m under its key; nil m is valid.
func (m *CanaryMetricsConfig) check(bad func(key, format string, args ...any)) {
	if m == nil {
		return
	}
	if r := m.TargetErrorRate; !(r >= 0 && r <= 1) {
		bad("target_error_rate", "must be in [0, 1], got %g", r)
	}
	if m.TargetP99Latency < 0 {
		bad("target_p99_latency", "must not be negative, got %s", m.TargetP99Latency)
	}
	if m.TargetErrorRate == 0 && m.TargetP99Latency == 0 {
		bad("target_error_rate", "set target_error_rate, target_p99_latency or both: a canary without targets cannot fail")
	}
	if m.MinSamples < 0 {
		bad("min_samples", "must not be negative, got %d", m.MinSamples)
	}
	if m.Window < 0 {
		bad("window", "must not be negative, got %s", m.Window)
	}
}

// GatewayTLSConfig terminates TLS on the gateway listener (gateway.tls).
// Both files empty means plain HTTP. The pair is reloaded while running
// when either file changes; a pair that does not load keeps the previous
// one (package certs, Reloader). Read at start, like Listen.
type GatewayTLSConfig struct {
	CertFile string `yaml:"cert_file" desc:"PEM certificate chain the gateway serves; with key_file turns on TLS (HTTP/1.1 and HTTP/2 by ALPN). Reloaded when the file changes."`
	KeyFile  string `yaml:"key_file" desc:"PEM private key of cert_file."`
}

// Enabled reports whether TLS is configured.
func (c GatewayTLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// check reports a half-configured pair.
func (c GatewayTLSConfig) check(bad func(key, format string, args ...any)) {
	checkPair(c.CertFile, c.KeyFile, bad)
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

// UpstreamTLSConfig is the client side of TLS to upstream groups with tls:
// true (gateway.upstream_tls): the CAs that verify them, a client
// certificate for upstreams that require one (mutual TLS), and a name to
// verify against instead of each target's host. Read at start.
type UpstreamTLSConfig struct {
	CAFile     string `yaml:"ca_file,omitempty" desc:"PEM CA certificates that verify upstream servers; empty means the system roots."`
	CertFile   string `yaml:"cert_file,omitempty" desc:"PEM client certificate chain the gateway presents to upstreams (mutual TLS); with key_file."`
	KeyFile    string `yaml:"key_file,omitempty" desc:"PEM private key of cert_file."`
	ServerName string `yaml:"server_name,omitempty" desc:"Name upstream certificates must carry (and the SNI sent) instead of each target's host."`
}

// IsZero reports whether nothing is configured.
func (c UpstreamTLSConfig) IsZero() bool { return c == UpstreamTLSConfig{} }

// check reports a half-configured client pair.
func (c UpstreamTLSConfig) check(bad func(key, format string, args ...any)) {
	checkPair(c.CertFile, c.KeyFile, bad)
}
