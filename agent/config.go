package agent

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/config"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Config is the content of fluxgate.yaml. Every key has a default (see
// DefaultConfig); a file overrides the defaults and FLUXGATE_<SECTION>_<KEY>
// environment variables override the file (see LoadConfig).
//
// Everything that lists, edits, overrides or validates keys walks this type
// by reflection, so a new section or key is one struct field with a yaml
// name, a one-line desc tag and, where it applies, a validate tag:
//
//	validate:"port"                      0..65535 (0 picks a free port)
//	validate:"nonempty"                  a non-empty string
//	validate:"urlpath"                   a string starting with "/"
//	validate:"positive"                  a duration or number above zero
//	validate:"oneof=debug|info|warn"     one of the listed values
//
// Several rules are separated by commas.
type Config struct {
	Server       ServerConfig       `yaml:"server"`
	Metrics      MetricsConfig      `yaml:"metrics"`
	OTLP         OTLPConfig         `yaml:"otlp"`
	Policies     PoliciesConfig     `yaml:"policies"`
	Admin        AdminConfig        `yaml:"admin"`
	Check        CheckConfig        `yaml:"check"`
	TLS          TLSConfig          `yaml:"tls"`
	Log          LogConfig          `yaml:"log"`
	Agent        AgentConfig        `yaml:"agent"`
	TSDB         TSDBConfig         `yaml:"tsdb"`
	Prometheus   PrometheusConfig   `yaml:"prometheus"`
	Alertmanager AlertmanagerConfig `yaml:"alertmanager"`
	Gateway      GatewayConfig      `yaml:"gateway"`
	Redis        RedisConfig        `yaml:"redis"`
	Limits       LimitsConfig       `yaml:"limits"`
	Kubernetes   KubernetesConfig   `yaml:"kubernetes"`
}

// LimitsConfig bounds what flows can make the agent hold in memory.
type LimitsConfig struct {
	MemoryMiB            int `yaml:"memory_mib" validate:"positive" desc:"The agent's memory budget in MiB (set it to the container's memory limit). The Go runtime's soft memory limit is 90 % of it, so garbage collection works harder as the heap nears the budget; a GOMEMLIMIT environment variable overrides that. The budget of the rate limiters' buckets (rate_limiter_memory_mib, per limiter) comes out of it."`
	RateLimiterMemoryMiB int `yaml:"rate_limiter_memory_mib" validate:"positive" desc:"Memory, in MiB, the buckets of one rate limiter may hold (each kind: local buckets, lazy sync's shares, local_fallback's), counted as 96 bytes a bucket whatever its key (a lazy share: 256 bytes plus its key); past it the least recently used bucket is evicted, and comes back full: up to one bucket of tokens early for that key (fluxgate_ratelimiter_evictions_total). 32 MiB is about 350,000 buckets."`
}

// ServerConfig is where the HTTP API and the gRPC services listen.
type ServerConfig struct {
	Host     string `yaml:"host" desc:"Address every listener binds to (HTTP API, gRPC, metrics, OTLP); 0.0.0.0 or :: means every interface."`
	HTTPPort int    `yaml:"http_port" validate:"port" desc:"Port of the HTTP API (check, explain, policies, health)."`
	GRPCPort int    `yaml:"grpc_port" validate:"port" desc:"Port of the gRPC services (flow control Check, Envoy ext_authz, health)."`
	// ProbePort serves /livez, /readyz and /v1/monitoring/health on a
	// listener of their own, so that probes never wait behind API
	// clients queued on a full HTTP port (issue 14).
	ProbePort int `yaml:"probe_port" validate:"port" desc:"Port of a plain-HTTP listener that serves only /livez, /readyz and /v1/monitoring/health, so probes never queue behind API clients; 0 means probes use the HTTP port only."`
	// Connection limits of every listener (conns.go); 0 or less means
	// the default.
	ReadTimeout    time.Duration `yaml:"read_timeout" desc:"Longest time an HTTP client (API, metrics, OTLP) may take to send a whole request, body included; the default lets a 16 MiB OTLP body arrive at about 2.2 Mbit/s."`
	WriteTimeout   time.Duration `yaml:"write_timeout" desc:"Longest time an HTTP request may take from the end of its headers to the end of its answer."`
	IdleTimeout    time.Duration `yaml:"idle_timeout" desc:"A keep-alive HTTP connection or a gRPC connection idle this long is closed."`
	MaxConnections int           `yaml:"max_connections" desc:"Most connections each listener holds at a time; more clients wait until one closes. Lowered at start to fit the open-files limit."`
}

// MetricsConfig is the Prometheus scrape endpoint.
type MetricsConfig struct {
	Enabled bool   `yaml:"enabled" desc:"Serve Prometheus metrics on their own port."`
	Port    int    `yaml:"port" validate:"port" desc:"Port of the metrics endpoint."`
	Path    string `yaml:"path" validate:"urlpath" desc:"URL path of the metrics endpoint (Prometheus text or OpenMetrics by Accept)."`
	TLS     bool   `yaml:"tls" desc:"With tls.cert_file set, serve metrics over TLS too, under the same client certificate rule as the other ports; false keeps the metrics port plain HTTP (for scrapers on a trusted network) while the others use TLS."`
}

// OTLPConfig is where the OpenTelemetry trace receiver listens.
type OTLPConfig struct {
	GRPCPort int    `yaml:"grpc_port" validate:"port" desc:"Port of the OTLP trace receiver over gRPC."`
	HTTPPort int    `yaml:"http_port" validate:"port" desc:"Port of the OTLP trace receiver over HTTP (/v1/traces)."`
	Token    string `yaml:"token" desc:"Bearer token the OTLP receiver requires (HTTP Authorization: Bearer TOKEN, gRPC metadata authorization); 401 or Unauthenticated without it. Empty leaves the receiver open to anyone who reaches its ports."`
}

// PoliciesConfig is where policy files are loaded from.
type PoliciesConfig struct {
	Dir string `yaml:"dir" validate:"nonempty" desc:"Directory of policy files, loaded at start and reloaded on change."`
}

// AdminConfig protects the operator endpoints of the HTTP API (auth.go).
type AdminConfig struct {
	Token string `yaml:"token" desc:"Bearer token of the admin API: policies, dynamic config, signals, explain, control points (clients send Authorization: Bearer TOKEN). Empty turns those endpoints off: they answer 403."`
}

// CheckConfig protects the check API (auth.go).
type CheckConfig struct {
	Token string `yaml:"token" desc:"Bearer token the check API requires: POST /v1/check, /v1/flow/end, /v1/check/http, gRPC FlowControlService and Envoy ext_authz (HTTP Authorization: Bearer TOKEN, gRPC metadata authorization); 401 or Unauthenticated without it. Empty leaves the check API open to anyone who reaches its ports."`
}

// LogConfig is the agent's structured log.
type LogConfig struct {
	Level  string `yaml:"level" validate:"oneof=debug|info|warn|error" desc:"Minimum log level."`
	Format string `yaml:"format" validate:"oneof=json|text" desc:"Log line format."`
}

// AgentConfig identifies this agent to policies.
type AgentConfig struct {
	AgentGroup string `yaml:"agent_group" validate:"nonempty" desc:"Agent group that policy selectors match with agent_group."`
}

// RedisConfig is the Redis that holds the buckets of global rate limiters
// (rate_limiter parameters backend: redis). See redis.go.
type RedisConfig struct {
	Address     string        `yaml:"address" desc:"Redis host:port holding global rate limits (rate limiters with backend: redis); empty means no Redis."`
	Addresses   []string      `yaml:"addresses" desc:"Redis Cluster seed nodes (host:port), instead of address."`
	Password    string        `yaml:"password" desc:"Redis AUTH password; empty means none."`
	DB          int           `yaml:"db" desc:"Redis database number (not with addresses: a cluster has only database 0)."`
	TLS         bool          `yaml:"tls" desc:"Connect to Redis over TLS, verifying its certificate against the system roots."`
	DialTimeout time.Duration `yaml:"dial_timeout" validate:"positive" desc:"Timeout of one connection attempt to Redis; each decision is bounded by its limiter's redis_timeout anyway."`
}

// rateLimiterMemory is limits.rate_limiter_memory_mib in bytes.
func (c LimitsConfig) rateLimiterMemory() int64 { return int64(c.RateLimiterMemoryMiB) << 20 }

// DefaultConfig returns the configuration used for every key that neither
// the file nor the environment sets.
func DefaultConfig() Config {
	return Config{
		Server: ServerConfig{Host: "0.0.0.0", HTTPPort: 8080, GRPCPort: 8081,
			ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 4096},
		Metrics:    MetricsConfig{Enabled: true, Port: 9090, Path: "/metrics", TLS: true},
		OTLP:       OTLPConfig{GRPCPort: 4317, HTTPPort: 4318},
		Policies:   PoliciesConfig{Dir: "./policies"},
		Log:        LogConfig{Level: "info", Format: "json"},
		Agent:      AgentConfig{AgentGroup: "default"},
		TSDB:       TSDBConfig{ScrapeInterval: time.Second, Retention: 2 * time.Hour},
		Prometheus: PrometheusConfig{Timeout: 5 * time.Second},
		Gateway:    GatewayConfig{Listen: "127.0.0.1:8000"},
		Redis:      RedisConfig{DialTimeout: time.Second},
		Limits:     LimitsConfig{MemoryMiB: 512, RateLimiterMemoryMiB: 32},
		Kubernetes: KubernetesConfig{Status: true, Discovery: true},
		TLS:        TLSConfig{ClientAuth: ClientAuthRequire, MinVersion: "tls1.2", HandshakeTimeout: 10 * time.Second},
	}
}

// EnvPrefix starts every environment variable that LoadConfig reads.
const EnvPrefix = "FLUXGATE_"

// envDebug set to true forces log.level to debug.
const envDebug = EnvPrefix + "DEBUG"

// schema loads, validates and edits fluxgate.yaml (package config).
var schema = config.New(config.Options[Config]{
	Name:      "agent",
	Defaults:  DefaultConfig,
	EnvPrefix: EnvPrefix,
	EnvFlags:  map[string]func(*Config){envDebug: func(c *Config) { c.Log.Level = "debug" }},
	Check: func(c *Config) error {
		return errors.Join(c.Gateway.Validate(), c.Redis.Validate())
	},
})

// LoadConfig returns the effective configuration: DefaultConfig, overridden
// by the file at path, overridden by FLUXGATE_* variables in environ (in
// os.Environ form), then validated.
//
// A missing file means defaults only; an unreadable one is an error. The
// file is decoded strictly (package strictyaml): unknown keys, duplicate keys
// and values of the wrong type are all reported at once as
// "file:line:col: message", in a strictyaml.ErrorList. An environment variable
// whose value does not parse is an error naming it; a FLUXGATE_* variable
// that names no key is returned as a warning.
func LoadConfig(path string, environ []string) (Config, []string, error) {
	return schema.Load(path, environ)
}

// Validate reports every invalid value at once, each naming its key, e.g.
// "metrics.port: must be 0..65535, got 70000".
func (c *Config) Validate() error { return schema.Validate(c) }

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// GatewayConfig is the built-in reverse proxy that `fluxgate gateway` runs
// (package gateway). Lists hold structs, so they are edited in the file,
// not with `config set`.
type GatewayConfig struct {
	Listen    string           `yaml:"listen" desc:"Address (host:port) the built-in gateway listens on; used by fluxgate gateway only."`
	Upstreams []UpstreamConfig `yaml:"upstreams" desc:"Upstream groups: name, algorithm, targets, health_check, outlier_detection, circuit_breaker, retries."`
	Routes    []RouteConfig    `yaml:"routes" desc:"Routes, first match wins: id, match (path_prefix, host, headers), upstream, control_point, canary."`
	TLS       GatewayTLSConfig `yaml:"tls" desc:"TLS termination (see gateway_config.go); empty means plain HTTP."`
	// UpstreamTLS is how the gateway connects to groups with tls: true.
	// Read at start, like Listen and TLS.
	UpstreamTLS UpstreamTLSConfig `yaml:"upstream_tls,omitempty" desc:"TLS to upstream groups with tls: true: ca_file, cert_file/key_file (mutual TLS), server_name; empty means the system roots and no client certificate."`
	// H2C accepts cleartext HTTP/2 (prior knowledge or Upgrade: h2c) on a
	// plain listener. Read at start, like Listen and TLS.
	H2C bool `yaml:"h2c" desc:"Accept cleartext HTTP/2 (h2c) on a plain-HTTP gateway listener; HTTP/2 over TLS is always offered by ALPN."`
	// Engine picks the server engine. Read at start, like Listen.
	Engine string `yaml:"engine,omitempty" desc:"Server engine: auto (the fast fasthttp engine on a plain HTTP/1.1 listener, net/http with tls or h2c) or net (net/http always). Empty means auto."`
}

// Gateway server engines (gateway.engine).
const (
	GatewayEngineAuto = "auto"
	GatewayEngineNet  = "net"
)

// Gateway load-balancing algorithms.
const (
	AlgorithmRoundRobin         = "round-robin"
	AlgorithmWeightedRoundRobin = "weighted-round-robin"
	AlgorithmLeastRequest       = "least-request"
	AlgorithmAdaptive           = "adaptive"
)

// GatewayAlgorithms lists the load-balancing algorithms.
var GatewayAlgorithms = []string{AlgorithmRoundRobin, AlgorithmWeightedRoundRobin, AlgorithmLeastRequest, AlgorithmAdaptive}

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
	// nil: never judged (see gateway_config.go).
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
func (c *GatewayConfig) UnmarshalStrictYAML(d *strictyaml.Decoder, n *yaml.Node) {
	type plain GatewayConfig
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
func (c GatewayConfig) Validate() error {
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
func (c *GatewayConfig) check(report func(path []any, msg string)) {
	bad := func(path []any, format string, args ...any) {
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
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad([]any{"listen"}, "must be host:port, got %q", c.Listen)
		}
	}
	c.TLS.check(func(key, format string, args ...any) { bad([]any{"tls", key}, format, args...) })
	c.UpstreamTLS.check(func(key, format string, args ...any) { bad([]any{"upstream_tls", key}, format, args...) })
	if c.Engine != "" && c.Engine != GatewayEngineAuto && c.Engine != GatewayEngineNet {
		bad([]any{"engine"}, "must be one of %s, %s, got %q", GatewayEngineAuto, GatewayEngineNet, c.Engine)
	}
	upstreams := make(map[string]bool)
	for i, u := range c.Upstreams {
		at := func(rest ...any) []any { return append([]any{"upstreams", i}, rest...) }
		switch {
		case u.Name == "":
			bad(at("name"), "must not be empty")
		case upstreams[u.Name]:
			bad(at("name"), "duplicate upstream %q", u.Name)
		}
		upstreams[u.Name] = true
		if u.Algorithm != "" && !contains(GatewayAlgorithms, u.Algorithm) {
			bad(at("algorithm"), "must be one of %s, got %q", strings.Join(GatewayAlgorithms, ", "), u.Algorithm)
		}
		if len(u.Targets) == 0 {
			bad(at("targets"), "must list at least one target")
		}
		addrs := make(map[string]bool)
		for j, t := range u.Targets {
			if _, port, err := net.SplitHostPort(t.Address); err != nil || port == "" {
				bad(at("targets", j, "address"), "must be host:port, got %q", t.Address)
			} else if addrs[t.Address] {
				bad(at("targets", j, "address"), "duplicate target %q", t.Address)
			}
			addrs[t.Address] = true
			if t.Weight < 0 {
				bad(at("targets", j, "weight"), "must not be negative, got %d", t.Weight)
			}
		}
		if hc := u.HealthCheck; hc != nil {
			if hc.Path != "" && !strings.HasPrefix(hc.Path, "/") {
				bad(at("health_check", "path"), "must start with \"/\", got %q", hc.Path)
			}
			if hc.UnhealthyThreshold < 0 {
				bad(at("health_check", "unhealthy_threshold"), "must not be negative, got %d", hc.UnhealthyThreshold)
			}
			if hc.HealthyThreshold < 0 {
				bad(at("health_check", "healthy_threshold"), "must not be negative, got %d", hc.HealthyThreshold)
			}
			if hc.Interval > 0 && hc.Timeout > hc.Interval {
				bad(at("health_check", "timeout"), "must not exceed interval %s, got %s", hc.Interval, hc.Timeout)
			}
		}
		if od := u.OutlierDetection; od != nil {
			if od.ErrorRate < 0 || od.ErrorRate > 1 {
				bad(at("outlier_detection", "error_rate"), "must be in [0, 1], got %g", od.ErrorRate)
			}
			if od.MinRequests < 0 {
				bad(at("outlier_detection", "min_requests"), "must not be negative, got %d", od.MinRequests)
			}
		}
		if cb := u.CircuitBreaker; cb != nil {
			if cb.ErrorRate < 0 || cb.ErrorRate > 1 {
				bad(at("circuit_breaker", "error_rate"), "must be in [0, 1], got %g", cb.ErrorRate)
			}
			if cb.MinRequests < 0 {
				bad(at("circuit_breaker", "min_requests"), "must not be negative, got %d", cb.MinRequests)
			}
			if cb.HalfOpenProbes < 0 {
				bad(at("circuit_breaker", "half_open_probes"), "must not be negative, got %d", cb.HalfOpenProbes)
			}
		}
		if r := u.Retries; r != nil {
			if r.Attempts < -1 {
				bad(at("retries", "attempts"), "must be -1 (off) or more, got %d", r.Attempts)
			}
			if r.Budget < 0 || r.Budget > 1 {
				bad(at("retries", "budget"), "must be in [0, 1], got %g", r.Budget)
			}
		}
		if u.PanicThreshold < 0 || u.PanicThreshold > 1 {
			bad(at("panic_threshold"), "must be in [0, 1], got %g", u.PanicThreshold)
		}
	}
	routes := make(map[string]bool)
	for i, r := range c.Routes {
		at := func(rest ...any) []any { return append([]any{"routes", i}, rest...) }
		switch {
		case r.ID == "":
			bad(at("id"), "must not be empty")
		case routes[r.ID]:
			bad(at("id"), "duplicate route %q", r.ID)
		}
		routes[r.ID] = true
		if p := r.Match.PathPrefix; p != "" && !strings.HasPrefix(p, "/") {
			bad(at("match", "path_prefix"), "must start with \"/\", got %q", p)
		}
		if !upstreams[r.Upstream] {
			bad(at("upstream"), "no upstream named %q", r.Upstream)
		}
		if cn := r.Canary; cn != nil {
			if !upstreams[cn.Upstream] {
				bad(at("canary", "upstream"), "no upstream named %q", cn.Upstream)
			}
			if cn.Weight < 0 || cn.Weight > 100 {
				bad(at("canary", "weight"), "must be a percentage 0..100, got %d", cn.Weight)
			}
			cn.Metrics.check(func(key, format string, args ...any) { bad(at("canary", "metrics", key), format, args...) })
			for j, m := range cn.Match {
				switch {
				case (m.Header == nil) == (m.Cookie == nil):
					bad(at("canary", "match", j), "must set exactly one of header, cookie")
				case m.Header != nil && m.Header.Name == "", m.Cookie != nil && m.Cookie.Name == "":
					bad(at("canary", "match", j), "name must not be empty")
				}
			}
		}
	}
}
