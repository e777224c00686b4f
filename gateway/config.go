package gateway

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Config is the gateway section of fluxgate.yaml: the built-in reverse
// proxy that `fluxgate gateway` runs. Lists hold structs, so they are edited in the file,
// not with `config set`.
type Config struct {
	Listen    string           `yaml:"listen" desc:"Address (host:port) the built-in gateway listens on; used by fluxgate gateway only."`
	Upstreams []UpstreamConfig `yaml:"upstreams" desc:"Upstream groups: name, algorithm, targets, health_check, outlier_detection, circuit_breaker, retries."`
	Routes    []RouteConfig    `yaml:"routes" desc:"Routes, first match wins: id, match (path_prefix, host, headers), upstream, control_point, canary."`
	TLS       TLSConfig        `yaml:"tls" desc:"TLS termination (see TLSConfig); empty means plain HTTP."`
	// UpstreamTLS is how the gateway connects to groups with tls: true.
	// Read at start, like Listen and TLS.
	UpstreamTLS UpstreamTLSConfig `yaml:"upstream_tls,omitempty" desc:"TLS to upstream groups with tls: true: ca_file, cert_file/key_file (mutual TLS), server_name; empty means the system roots and no client certificate."`
	// H2C accepts cleartext HTTP/2 (prior knowledge or Upgrade: h2c) on a
	// plain listener. Read at start, like Listen and TLS.
	H2C bool `yaml:"h2c" desc:"Accept cleartext HTTP/2 (h2c) on a plain-HTTP gateway listener; HTTP/2 over TLS is always offered by ALPN. HTTP/1.1 clients stay on the engine, connections opening with the HTTP/2 preface (prior knowledge) go to http2.server (on the loops by default on Linux), and Upgrade: h2c (with other requests outside lean's subset) to net/http."`
	// Engine picks the server engine. Read at start, like Listen.
	Engine string `yaml:"engine,omitempty" desc:"Server engine: auto (loop on Linux, on a plain or tls listener, falling back to lean where its loops cannot start; lean with h2c when http2.server is lean or net, and elsewhere), lean (HTTP/1.1 requests forwarded as they come; HTTP/2 over tls and h2c prior knowledge to http2.server, Upgrade: h2c to net/http, other connections to fast), fast (fasthttp on a plain listener, net/http with tls), net (net/http always) or loop (Linux only, and it fails to start where it cannot run: the lean engine's requests served on event loops, one a CPU, over tls too after a handshake on a goroutine, HTTP/2 clients on the loops too unless http2.server says lean or net; what lean hands on, upstream TLS groups and checks that may wait handled as docs/gateway.md says; with h2c and http2.server lean or net it serves as lean). Empty means auto."`
	// HTTP2 is how the lean engine serves HTTP/2 clients. Read at start.
	HTTP2 HTTP2Config `yaml:"http2,omitempty" desc:"How the lean and loop engines serve clients that choose HTTP/2 over TLS, or h2c with prior knowledge (see HTTP2Config)."`
	// MaxConnections caps the client connections held at a time, on every
	// engine (see conncap.go). Read at start, like Listen; 0 means
	// DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections,omitempty" desc:"Most client connections the gateway holds at a time, on every engine, a connection handed from one engine to another counted once. At the cap it stops accepting (clients wait in the listen backlog) and closes the connection idle longest (accepted and silent, or kept alive between requests) to make room; a connection with a request in flight is never closed for another. Lowered at start, and logged, to fit the open-files limit (a target connection for each client one). 0 means 10000."`
}

// HTTP2Config is how the lean engine serves the TLS connections that chose
// HTTP/2 by ALPN, and with gateway.h2c the plain ones that open with the
// HTTP/2 preface (gateway.http2).
type HTTP2Config struct {
	Server string `yaml:"server,omitempty" desc:"What serves HTTP/2 clients over TLS, and h2c clients with prior knowledge: lean (package internal/h2, the gateway's own HTTP/2 server, on goroutines), net (net/http's HTTP/2 server) or loop (the loop engine, Linux: each stream served on its event loops as an HTTP/1.1 request is, docs/gateway.md; h2c needs h2c: true). Empty means loop where the loop engine serves (engine auto on Linux, or loop), lean elsewhere. The engines net and fast, and Upgrade: h2c, always use net/http's."`
}

// HTTP/2 servers (gateway.http2.server).
const (
	HTTP2ServerLean = "lean"
	HTTP2ServerNet  = "net"
	HTTP2ServerLoop = "loop"
)

// DefaultConfig is the gateway section of a file that does not set it.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:8000", MaxConnections: DefaultMaxConnections}
}

// Server engines (gateway.engine).
const (
	EngineAuto = "auto"
	EngineNet  = "net"
	EngineFast = "fast"
	EngineLean = "lean"
	EngineLoop = "loop" // Linux only
)

// Load-balancing algorithms (gateway.upstreams[].algorithm).
const (
	AlgorithmRoundRobin         = "round-robin"
	AlgorithmWeightedRoundRobin = "weighted-round-robin"
	AlgorithmLeastRequest       = "least-request"
	AlgorithmAdaptive           = "adaptive"
)

// Algorithms lists the load-balancing algorithms.
var Algorithms = []string{AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastRequest, AlgorithmAdaptive}

// UpstreamConfig is a group of interchangeable targets. Zero fields take
// the defaults package gateway documents.
type UpstreamConfig struct {
	Name             string                  `yaml:"name"`
	Algorithm        string                  `yaml:"algorithm,omitempty"` // default round-robin
	Targets          []TargetConfig          `yaml:"targets"`
	HealthCheck      *HealthCheckConfig      `yaml:"health_check,omitempty"`      // nil: no active checks
	OutlierDetection *OutlierDetectionConfig `yaml:"outlier_detection,omitempty"` // nil: no passive checks
	CircuitBreaker   *CircuitBreakerConfig   `yaml:"circuit_breaker,omitempty"`   // nil: no breaker
	Retries          *RetriesConfig          `yaml:"retries,omitempty"`           // nil: defaults
	// PanicThreshold is the share of healthy targets below which the
	// group ignores health and spreads over all targets. Default 0.5.
	PanicThreshold float64 `yaml:"panic_threshold,omitempty"`
	// HTTP2 speaks HTTP/2 to the targets: h2c with prior knowledge, or
	// over TLS (ALPN h2) with TLS.
	HTTP2 bool `yaml:"http2,omitempty"`
	// TLS connects to the targets over TLS, verified against the system
	// roots with the target's host as server name.
	TLS bool `yaml:"tls,omitempty"`
}

// TargetConfig is one upstream server.
type TargetConfig struct {
	Address string `yaml:"address"`          // host:port
	Weight  int    `yaml:"weight,omitempty"` // default 1
}

// HealthCheckConfig is an active HTTP health check: GET Path on every
// target each Interval; UnhealthyThreshold failures in a row drain a
// target, HealthyThreshold successes in a row return it.
type HealthCheckConfig struct {
	Path               string        `yaml:"path,omitempty"`                // default /healthz
	Interval           time.Duration `yaml:"interval,omitempty"`            // default 5s
	Timeout            time.Duration `yaml:"timeout,omitempty"`             // default 1s, at most interval
	UnhealthyThreshold int           `yaml:"unhealthy_threshold,omitempty"` // default 3
	HealthyThreshold   int           `yaml:"healthy_threshold,omitempty"`   // default 2
}

// OutlierDetectionConfig drains a target whose p95 latency or 5xx ratio
// over Window exceeds its limit, and returns it after a back-off.
type OutlierDetectionConfig struct {
	P95Latency  time.Duration `yaml:"p95_latency,omitempty"`  // 0: latency not checked
	ErrorRate   float64       `yaml:"error_rate,omitempty"`   // 0: errors not checked
	Window      time.Duration `yaml:"window,omitempty"`       // default 10s
	MinRequests int           `yaml:"min_requests,omitempty"` // default 10 in Window
	// EjectFor is how long a drained target stays out. Default 5s.
	EjectFor time.Duration `yaml:"eject_for,omitempty"`
}

// CircuitBreakerConfig is an upstream group's breaker (package
// controlpoint/breaker); zero fields take its defaults.
type CircuitBreakerConfig struct {
	ErrorRate      float64       `yaml:"error_rate,omitempty"`
	MinRequests    int           `yaml:"min_requests,omitempty"`
	Window         time.Duration `yaml:"window,omitempty"`
	OpenFor        time.Duration `yaml:"open_for,omitempty"`
	HalfOpenProbes int           `yaml:"half_open_probes,omitempty"`
}

// RetriesConfig retries idempotent requests that failed to connect, on
// another target, while retries stay within Budget of requests.
type RetriesConfig struct {
	Attempts int     `yaml:"attempts,omitempty"` // extra attempts per request, default 2; -1 disables
	Budget   float64 `yaml:"budget,omitempty"`   // retries as a share of requests, default 0.2
}

// RouteConfig sends the requests it matches through a control point to
// an upstream group.
type RouteConfig struct {
	ID           string        `yaml:"id"`
	Match        RouteMatch    `yaml:"match,omitempty"`
	Upstream     string        `yaml:"upstream"`
	ControlPoint string        `yaml:"control_point,omitempty"` // default ingress
	Canary       *CanaryConfig `yaml:"canary,omitempty"`
}

// RouteMatch matches a request when every field set matches.
type RouteMatch struct {
	PathPrefix string            `yaml:"path_prefix,omitempty"`
	Host       string            `yaml:"host,omitempty"`    // exact, port ignored
	Headers    map[string]string `yaml:"headers,omitempty"` // exact values
}

// CanaryConfig sends Weight percent of a route's traffic, and every
// request that matches, to another upstream group.
type CanaryConfig struct {
	Upstream string        `yaml:"upstream"`
	Weight   int           `yaml:"weight,omitempty"` // percent, 0..100
	Match    []CanaryMatch `yaml:"match,omitempty"`
	// Sticky keeps a client (by X-Client-Id, else its address) on the
	// same side for a given weight.
	Sticky bool `yaml:"sticky,omitempty"`
	// Metrics judge the canary and roll it back when it misses them;
	// nil: never judged (see TLSConfig).
	Metrics *CanaryMetricsConfig `yaml:"metrics,omitempty"`
}

// CanaryMatch forces the canary for requests with a header or cookie.
type CanaryMatch struct {
	Header *NameValue `yaml:"header,omitempty"`
	Cookie *NameValue `yaml:"cookie,omitempty"`
}

// NameValue is a header or cookie with its exact value.
type NameValue struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// UnmarshalStrictYAML decodes the section and reports each invalid value
// at its position.
func (c *Config) UnmarshalStrictYAML(d *strictyaml.Decoder, n *yaml.Node) {
	type plain Config
	before := d.ErrorCount()
	d.Decode(n, (*plain)(c))
	if d.ErrorCount() > before {
		return
	}
	c.check(func(path []any, msg string) {
		if len(path) == 1 {
			// A key directly under gateway: position the error at its
			// value, where the config loader names the key itself.
			if v := valueOf(n, path[0]); v != nil {
				_, msg, _ = strings.Cut(msg, ": ")
				d.Errorf(v, "%s", msg)
				return
			}
		}
		d.Errorf(nodeAt(n, path), "%s", msg)
	})
}

// Validate reports every invalid value of the section at once, each naming
// its key, e.g. "gateway.upstreams[0].algorithm: must be one of …".
func (c Config) Validate() error {
	var errs []error
	c.check(func(_ []any, msg string) { errs = append(errs, errors.New(msg)) })
	return errors.Join(errs...)
}

// valueOf returns the value node of key in the mapping n, or nil.
func valueOf(n *yaml.Node, key any) *yaml.Node {
	for n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// nodeAt finds the node of path (keys and list indexes) under n; for a
// mapping key it returns the key node. It stops at the deepest node found.
func nodeAt(n *yaml.Node, path []any) *yaml.Node {
	for _, p := range path {
		for (n.Kind == yaml.DocumentNode && len(n.Content) > 0) || (n.Kind == yaml.AliasNode && n.Alias != nil) {
			if n.Kind == yaml.AliasNode {
				n = n.Alias
			} else {
				n = n.Content[0]
			}
		}
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					if p == path[len(path)-1] {
						return n.Content[i]
					}
					n, found = n.Content[i+1], true
					break
				}
			}
			if !found {
				return n
			}
		case int:
			if n.Kind != yaml.SequenceNode || p >= len(n.Content) {
				return n
			}
			n = n.Content[p]
		}
	}
	return n
}

// check calls report for every invalid value with its path under the
// section and a message that names the full key.
func (c *Config) check(report func(path []any, msg string)) {
	bad := reporter(func(path []any, format string, args ...any) {
		var key strings.Builder
		key.WriteString("gateway")
		for _, p := range path {
			switch p := p.(type) {
			case string:
				key.WriteString("." + p)
			case int:
				fmt.Fprintf(&key, "[%d]", p)
			}
		}
		report(path, key.String()+": "+fmt.Sprintf(format, args...))
	})
	if c.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil {
			bad([]any{"listen"}, "must be host:port, got %q", c.Listen)
		} else if !portInRange(port) {
			bad([]any{"listen"}, "port must be 0..65535, got %q", c.Listen)
		}
	}
	c.TLS.check(bad.key("tls"))
	c.UpstreamTLS.check(bad.key("upstream_tls"))
	switch c.Engine {
	case "", EngineAuto, EngineNet, EngineFast, EngineLean:
	case EngineLoop:
		if !loopsSupported {
			bad([]any{"engine"}, "%s runs on Linux only (epoll); use %s or %s here", EngineLoop, EngineAuto, EngineLean)
		}
	default:
		bad([]any{"engine"}, "must be one of %s, %s, %s, %s, %s, got %q", EngineAuto, EngineFast, EngineLean, EngineLoop, EngineNet, c.Engine)
	}
	if c.MaxConnections < 0 {
		bad([]any{"max_connections"}, "must not be negative (0 means %d), got %d", DefaultMaxConnections, c.MaxConnections)
	}
	switch c.HTTP2.Server {
	case "", HTTP2ServerLean, HTTP2ServerNet:
	case HTTP2ServerLoop:
		switch {
		case !loopsSupported:
			bad([]any{"http2", "server"}, "%s runs on Linux only (epoll); use %s or %s here", HTTP2ServerLoop, HTTP2ServerLean, HTTP2ServerNet)
		case !c.TLS.Enabled() && !c.H2C:
			bad([]any{"http2", "server"}, "%s serves HTTP/2 clients over tls, or h2c ones with h2c: true; neither is set", HTTP2ServerLoop)
		case c.Engine != "" && c.Engine != EngineAuto && c.Engine != EngineLoop:
			bad([]any{"http2", "server"}, "%s needs engine %s or %s, not %s", HTTP2ServerLoop, EngineAuto, EngineLoop, c.Engine)
		}
	default:
		bad([]any{"http2", "server"}, "must be %s, %s or %s, got %q", HTTP2ServerLean, HTTP2ServerNet, HTTP2ServerLoop, c.HTTP2.Server)
	}
	upstreams := make(map[string]bool)
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		at := bad.under("upstreams", i)
		switch {
		case u.Name == "":
			at([]any{"name"}, "must not be empty")
		case upstreams[u.Name]:
			at([]any{"name"}, "duplicate upstream %q", u.Name)
		}
		upstreams[u.Name] = true
		u.check(at)
	}
	routes := make(map[string]bool)
	for i := range c.Routes {
		r := &c.Routes[i]
		at := bad.under("routes", i)
		switch {
		case r.ID == "":
			at([]any{"id"}, "must not be empty")
		case routes[r.ID]:
			at([]any{"id"}, "duplicate route %q", r.ID)
		}
		routes[r.ID] = true
		r.check(at, upstreams)
	}
}

// reporter reports an invalid value at its path (keys and list indexes)
// under the section.
type reporter func(path []any, format string, args ...any)

// under returns the reporter of the values under prefix.
func (bad reporter) under(prefix ...any) reporter {
	return func(path []any, format string, args ...any) {
		bad(append(slices.Clone(prefix), path...), format, args...)
	}
}

// key returns the reporter by key name that the checks of small types
// (TLSConfig, CanaryMetricsConfig) take, for the values under prefix.
func (bad reporter) key(prefix ...any) func(key, format string, args ...any) {
	return func(key, format string, args ...any) {
		bad(append(slices.Clone(prefix), key), format, args...)
	}
}

// check reports the invalid values of one upstream group; its name, which
// must be unique across groups, is checked by Config.check.
func (u *UpstreamConfig) check(bad reporter) {
	if u.Algorithm != "" && !slices.Contains(Algorithms, u.Algorithm) {
		bad([]any{"algorithm"}, "must be one of %s, got %q", strings.Join(Algorithms, ", "), u.Algorithm)
	}
	if len(u.Targets) == 0 {
		bad([]any{"targets"}, "must list at least one target")
	}
	addrs := make(map[string]bool)
	for j, t := range u.Targets {
		if _, port, err := net.SplitHostPort(t.Address); err != nil || port == "" {
			bad([]any{"targets", j, "address"}, "must be host:port, got %q", t.Address)
		} else if !portInRange(port) || port == "0" {
			bad([]any{"targets", j, "address"}, "port must be 1..65535, got %q", t.Address)
		} else if addrs[t.Address] {
			bad([]any{"targets", j, "address"}, "duplicate target %q", t.Address)
		}
		addrs[t.Address] = true
		if t.Weight < 0 {
			bad([]any{"targets", j, "weight"}, "must not be negative, got %d", t.Weight)
		}
	}
	u.HealthCheck.check(bad.key("health_check"))
	u.OutlierDetection.check(bad.key("outlier_detection"))
	u.CircuitBreaker.check(bad.key("circuit_breaker"))
	u.Retries.check(bad.key("retries"))
	if u.PanicThreshold < 0 || u.PanicThreshold > 1 {
		bad([]any{"panic_threshold"}, "must be in [0, 1], got %g", u.PanicThreshold)
	}
}

// check reports every invalid value of hc; nil hc is valid.
func (hc *HealthCheckConfig) check(bad func(key, format string, args ...any)) {
	if hc == nil {
		return
	}
	if hc.Path != "" && !strings.HasPrefix(hc.Path, "/") {
		bad("path", "must start with \"/\", got %q", hc.Path)
	}
	if hc.UnhealthyThreshold < 0 {
		bad("unhealthy_threshold", "must not be negative, got %d", hc.UnhealthyThreshold)
	}
	if hc.HealthyThreshold < 0 {
		bad("healthy_threshold", "must not be negative, got %d", hc.HealthyThreshold)
	}
	if hc.Interval > 0 && hc.Timeout > hc.Interval {
		bad("timeout", "must not exceed interval %s, got %s", hc.Interval, hc.Timeout)
	}
}

// check reports every invalid value of od; nil od is valid.
func (od *OutlierDetectionConfig) check(bad func(key, format string, args ...any)) {
	if od == nil {
		return
	}
	if od.ErrorRate < 0 || od.ErrorRate > 1 {
		bad("error_rate", "must be in [0, 1], got %g", od.ErrorRate)
	}
	if od.MinRequests < 0 {
		bad("min_requests", "must not be negative, got %d", od.MinRequests)
	}
}

// check reports every invalid value of cb; nil cb is valid.
func (cb *CircuitBreakerConfig) check(bad func(key, format string, args ...any)) {
	if cb == nil {
		return
	}
	if cb.ErrorRate < 0 || cb.ErrorRate > 1 {
		bad("error_rate", "must be in [0, 1], got %g", cb.ErrorRate)
	}
	if cb.MinRequests < 0 {
		bad("min_requests", "must not be negative, got %d", cb.MinRequests)
	}
	if cb.HalfOpenProbes < 0 {
		bad("half_open_probes", "must not be negative, got %d", cb.HalfOpenProbes)
	}
}

// check reports every invalid value of r; nil r is valid.
func (r *RetriesConfig) check(bad func(key, format string, args ...any)) {
	if r == nil {
		return
	}
	if r.Attempts < -1 {
		bad("attempts", "must be -1 (off) or more, got %d", r.Attempts)
	}
	if r.Budget < 0 || r.Budget > 1 {
		bad("budget", "must be in [0, 1], got %g", r.Budget)
	}
}

// check reports the invalid values of one route; upstreams holds the
// names of the groups. Its id, which must be unique across routes, is
// checked by Config.check.
func (r *RouteConfig) check(bad reporter, upstreams map[string]bool) {
	if p := r.Match.PathPrefix; p != "" && !strings.HasPrefix(p, "/") {
		bad([]any{"match", "path_prefix"}, "must start with \"/\", got %q", p)
	}
	if !upstreams[r.Upstream] {
		bad([]any{"upstream"}, "no upstream named %q", r.Upstream)
	}
	r.Canary.check(bad.under("canary"), upstreams)
}

// check reports every invalid value of cn; nil cn is valid.
func (cn *CanaryConfig) check(bad reporter, upstreams map[string]bool) {
	if cn == nil {
		return
	}
	if !upstreams[cn.Upstream] {
		bad([]any{"upstream"}, "no upstream named %q", cn.Upstream)
	}
	if cn.Weight < 0 || cn.Weight > 100 {
		bad([]any{"weight"}, "must be a percentage 0..100, got %d", cn.Weight)
	}
	cn.Metrics.check(bad.key("metrics"))
	for j, m := range cn.Match {
		switch {
		case (m.Header == nil) == (m.Cookie == nil):
			bad([]any{"match", j}, "must set exactly one of header, cookie")
		case m.Header != nil && m.Header.Name == "", m.Cookie != nil && m.Cookie.Name == "":
			bad([]any{"match", j}, "name must not be empty")
		}
	}
}

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

// TLSConfig terminates TLS on the gateway listener (gateway.tls).
// Both files empty means plain HTTP. The pair is reloaded while running
// when either file changes; a pair that does not load keeps the previous
// one (package certs, Reloader). Read at start, like Listen.
type TLSConfig struct {
	CertFile string   `yaml:"cert_file" desc:"PEM certificate chain the gateway serves; with key_file turns on TLS (HTTP/1.1 and HTTP/2 by ALPN). Reloaded when the file changes."`
	KeyFile  string   `yaml:"key_file" desc:"PEM private key of cert_file."`
	ALPN     []string `yaml:"alpn,omitempty" desc:"Protocols offered to clients by ALPN, in order of preference: h2, http/1.1. Empty means both, h2 first. [http/1.1] keeps every client on HTTP/1.1, served by the loop or lean engine (clients that would choose HTTP/2 speak HTTP/1.1); HTTP/2 connections are served by http2.server (docs/gateway.md), and gRPC needs them."`
}

// ALPN protocol names of TLSConfig.ALPN.
const (
	ALPNHTTP2 = "h2"
	ALPNHTTP1 = "http/1.1"
)

// Enabled reports whether TLS is configured.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// nextProtos is what the listener offers by ALPN.
func (c TLSConfig) nextProtos() []string {
	if len(c.ALPN) == 0 {
		return []string{ALPNHTTP2, ALPNHTTP1}
	}
	return slices.Clone(c.ALPN)
}

// check reports a half-configured pair and protocols it does not serve.
func (c TLSConfig) check(bad func(key, format string, args ...any)) {
	checkPair(c.CertFile, c.KeyFile, bad)
	seen := map[string]bool{}
	for _, p := range c.ALPN {
		switch {
		case p != ALPNHTTP2 && p != ALPNHTTP1:
			bad("alpn", "offers %q; the gateway serves %s and %s", p, ALPNHTTP2, ALPNHTTP1)
		case seen[p]:
			bad("alpn", "lists %s twice", p)
		}
		seen[p] = true
	}
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

// portInRange reports whether a numeric port fits in 16 bits; a port
// given by service name ("http") is left to the resolver. Without it
// 127.0.0.1:99999 passed validation and failed only when bound or dialled.
func portInRange(port string) bool {
	n, err := strconv.ParseUint(port, 10, 64)
	if err != nil {
		return strings.Trim(port, "0123456789") != "" // a name, not an overflowing number
	}
	return n <= 65535
}
