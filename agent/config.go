package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/config"
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
	Redis        RedisConfig        `yaml:"redis"`
	Limits       LimitsConfig       `yaml:"limits"`
	Kubernetes   KubernetesConfig   `yaml:"kubernetes"`
}

// LimitsConfig bounds what flows can make the agent hold in memory.
type LimitsConfig struct {
	MemoryMiB            int `yaml:"memory_mib" validate:"positive" desc:"The agent's memory budget in MiB (set it to the container's memory limit). The Go runtime's soft memory limit is 90 % of it, so garbage collection works harder as the heap nears the budget; a GOMEMLIMIT environment variable overrides that. The budget of the rate limiters' buckets (rate_limiter_memory_mib, per limiter) comes out of it."`
	ApertureCacheMiB     int `yaml:"aperture_cache_mib" validate:"positive" desc:"Memory, in MiB, Aperture's result and global caches (CacheUpsert over Aperture's check API) may hold together, keys, values and each entry's overhead counted; past it the least recently used entries go first."`
	RateLimiterMemoryMiB int `yaml:"rate_limiter_memory_mib" validate:"positive" desc:"Memory, in MiB, the buckets of one rate limiter may hold (each kind: local buckets, lazy sync's shares, local_fallback's), counted as 96 bytes a bucket whatever its key (a lazy share: 256 bytes plus its key); past it the least recently used bucket is evicted, and comes back full: up to one bucket of tokens early for that key (fluxgate_ratelimiter_evictions_total). 32 MiB is about 350,000 buckets."`
}

// ServerConfig is where the HTTP API and the gRPC services listen.
type ServerConfig struct {
	Host     string `yaml:"host" desc:"Address every listener binds to (HTTP API, gRPC, metrics, OTLP); 0.0.0.0 or :: means every interface."`
	HTTPPort int    `yaml:"http_port" validate:"port" desc:"Port of the HTTP API (check, explain, policies, health)."`
	GRPCPort int    `yaml:"grpc_port" validate:"port" desc:"Port of the gRPC services (flow control Check, Envoy ext_authz and access log, health)."`
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
	// HTTPEngine picks how the HTTP port serves the check API (httploop.go).
	HTTPEngine string `yaml:"http_engine" desc:"How the HTTP port serves the calls made around every request, GET|POST /v1/check/http (nginx auth_request), POST /v1/check (JSON, the Python SDK; while no control point may wait) and POST /v1/flow/end: auto serves them on event loops on Linux, over TLS too (tls.cert_file: the handshake on a goroutine, then the loops; HTTP/2 clients go to net/http), net/http elsewhere, loop does so or fails to start, net serves everything with net/http. On the loops every other request, and a connection from its first other request on, is served by net/http. Empty means auto."`
	// GRPCEngine picks how the gRPC port serves the check (grpcloop.go).
	GRPCEngine string `yaml:"grpc_engine" desc:"How the gRPC port serves the calls made once per request (FlowControlService's Check and FlowEnd, Aperture's, Envoy's ext_authz Authorization/Check): auto answers them on event loops on Linux (over TLS too, with tls.cert_file: the handshake on a goroutine, then the loops; grpc-go elsewhere), loop does so or fails to start, net serves everything with grpc-go. On the loops every other call (health, OTLP spans, access logs) is served by grpc-go on the same connection, behind the same tokens. Empty means auto."`
}

// validateEngine checks server.http_engine and server.grpc_engine; empty
// means auto (a ServerConfig built in code sets only what it needs).
func (s ServerConfig) validateEngine() error {
	var errs []error
	for _, e := range []struct{ key, v string }{{"server.http_engine", s.HTTPEngine}, {"server.grpc_engine", s.GRPCEngine}} {
		switch e.v {
		case "", "auto", "loop", "net":
		default:
			errs = append(errs, fmt.Errorf("%s: must be one of auto, loop, net, got %q", e.key, e.v))
		}
	}
	return errors.Join(errs...)
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
	Token string `yaml:"token" desc:"Bearer token the check API requires: POST /v1/check, /v1/flow/end, /v1/check/http, gRPC FlowControlService, Envoy ext_authz and the Envoy access-log service (HTTP Authorization: Bearer TOKEN, gRPC metadata authorization); 401 or Unauthenticated without it. Empty leaves the check API open to anyone who reaches its ports."`
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
			ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 4096, HTTPEngine: "auto", GRPCEngine: "auto"},
		Metrics:    MetricsConfig{Enabled: true, Port: 9090, Path: "/metrics", TLS: true},
		OTLP:       OTLPConfig{GRPCPort: 4317, HTTPPort: 4318},
		Policies:   PoliciesConfig{Dir: "./policies"},
		Log:        LogConfig{Level: "info", Format: "json"},
		Agent:      AgentConfig{AgentGroup: "default"},
		TSDB:       TSDBConfig{ScrapeInterval: 250 * time.Millisecond, Retention: 2 * time.Hour},
		Prometheus: PrometheusConfig{Timeout: 5 * time.Second},
		Redis:      RedisConfig{DialTimeout: time.Second},
		Limits:     LimitsConfig{MemoryMiB: 512, ApertureCacheMiB: 64, RateLimiterMemoryMiB: 32},
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
	Check:     (*Config).CrossCheck,
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

// CrossCheck holds the agent's rules that validate tags cannot say (Redis
// addresses, server.http_engine): Validate runs it, and so does a schema
// that embeds Config (package fluxgate's).
func (c *Config) CrossCheck() error {
	return errors.Join(c.Redis.Validate(), c.Server.validateEngine())
}
