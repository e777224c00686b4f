package gateway

import (
	"strings"
	"testing"
	"time"
)

// Validate reports every invalid value of every type the section holds,
// each under its full key, in the order of the section.
func TestConfigValidateEveryType(t *testing.T) {
	c := Config{
		Listen:      "nohost",
		TLS:         TLSConfig{CertFile: "c.pem", ALPN: []string{"h2", "http/1.0", "h2"}},
		UpstreamTLS: UpstreamTLSConfig{KeyFile: "k.pem"},
		Engine:      "turbo",
		HTTP2:       HTTP2Config{Server: "x"},
		Upstreams: []UpstreamConfig{
			{Name: "a", Algorithm: "random", Targets: []TargetConfig{{Address: "x:1", Weight: -1}, {Address: "x:1"}, {Address: "x"}},
				HealthCheck:      &HealthCheckConfig{Path: "h", UnhealthyThreshold: -1, HealthyThreshold: -1, Interval: time.Second, Timeout: 2 * time.Second},
				OutlierDetection: &OutlierDetectionConfig{ErrorRate: 2, MinRequests: -1},
				CircuitBreaker:   &CircuitBreakerConfig{ErrorRate: -1, MinRequests: -1, HalfOpenProbes: -1},
				Retries:          &RetriesConfig{Attempts: -2, Budget: 2},
				PanicThreshold:   2},
			{Name: "a", Targets: []TargetConfig{{Address: "y:1"}}},
			{Targets: []TargetConfig{{Address: "z:1"}}},
		},
		Routes: []RouteConfig{
			{ID: "r", Match: RouteMatch{PathPrefix: "p"}, Upstream: "nope",
				Canary: &CanaryConfig{Upstream: "nope", Weight: 101, Metrics: &CanaryMetricsConfig{TargetErrorRate: 2, MinSamples: -1},
					Match: []CanaryMatch{{}, {Header: &NameValue{}}, {Cookie: &NameValue{Name: "c"}}}}},
			{ID: "r", Upstream: "a"},
			{Upstream: "a"},
		},
	}
	want := []string{
		`gateway.listen: must be host:port, got "nohost"`,
		`gateway.tls.key_file: must be set with cert_file`,
		`gateway.tls.alpn: offers "http/1.0"; the gateway serves h2 and http/1.1`,
		`gateway.tls.alpn: lists h2 twice`,
		`gateway.upstream_tls.cert_file: must be set with key_file`,
		`gateway.engine: must be one of auto, fast, lean, loop, net, got "turbo"`,
		`gateway.http2.server: must be lean, net or loop, got "x"`,
		`gateway.upstreams[0].algorithm: must be one of round-robin, weighted-round-robin, least-request, adaptive, got "random"`,
		`gateway.upstreams[0].targets[0].weight: must not be negative, got -1`,
		`gateway.upstreams[0].targets[1].address: duplicate target "x:1"`,
		`gateway.upstreams[0].targets[2].address: must be host:port, got "x"`,
		`gateway.upstreams[0].health_check.path: must start with "/", got "h"`,
		`gateway.upstreams[0].health_check.unhealthy_threshold: must not be negative, got -1`,
		`gateway.upstreams[0].health_check.healthy_threshold: must not be negative, got -1`,
		`gateway.upstreams[0].health_check.timeout: must not exceed interval 1s, got 2s`,
		`gateway.upstreams[0].outlier_detection.error_rate: must be in [0, 1], got 2`,
		`gateway.upstreams[0].outlier_detection.min_requests: must not be negative, got -1`,
		`gateway.upstreams[0].circuit_breaker.error_rate: must be in [0, 1], got -1`,
		`gateway.upstreams[0].circuit_breaker.min_requests: must not be negative, got -1`,
		`gateway.upstreams[0].circuit_breaker.half_open_probes: must not be negative, got -1`,
		`gateway.upstreams[0].retries.attempts: must be -1 (off) or more, got -2`,
		`gateway.upstreams[0].retries.budget: must be in [0, 1], got 2`,
		`gateway.upstreams[0].panic_threshold: must be in [0, 1], got 2`,
		`gateway.upstreams[1].name: duplicate upstream "a"`,
		`gateway.upstreams[2].name: must not be empty`,
		`gateway.routes[0].match.path_prefix: must start with "/", got "p"`,
		`gateway.routes[0].upstream: no upstream named "nope"`,
		`gateway.routes[0].canary.upstream: no upstream named "nope"`,
		`gateway.routes[0].canary.weight: must be a percentage 0..100, got 101`,
		`gateway.routes[0].canary.metrics.target_error_rate: must be in [0, 1], got 2`,
		`gateway.routes[0].canary.metrics.min_samples: must not be negative, got -1`,
		`gateway.routes[0].canary.match[0]: must set exactly one of header, cookie`,
		`gateway.routes[0].canary.match[1]: name must not be empty`,
		`gateway.routes[1].id: duplicate route "r"`,
		`gateway.routes[2].id: must not be empty`,
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// A numeric port past 65535 is refused with its key, not at bind or dial
// time (fluxgate config set gateway.listen 127.0.0.1:99999 used to pass).
func TestConfigPortRange(t *testing.T) {
	c := Config{
		Listen:    "127.0.0.1:99999",
		Upstreams: []UpstreamConfig{{Name: "a", Targets: []TargetConfig{{Address: "x:70000"}, {Address: "x:0"}, {Address: "x:http"}, {Address: "x:65535"}}}},
		Routes:    []RouteConfig{{ID: "r", Upstream: "a"}},
	}
	want := []string{
		`gateway.listen: port must be 0..65535, got "127.0.0.1:99999"`,
		`gateway.upstreams[0].targets[0].address: port must be 1..65535, got "x:70000"`,
		`gateway.upstreams[0].targets[1].address: port must be 1..65535, got "x:0"`,
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted ports past 65535")
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

// gateway.http2.server loop serves HTTP/2 clients on the loop engine, over
// TLS or h2c with prior knowledge: asked for elsewhere, it is refused with
// why.
func TestConfigHTTP2OnLoops(t *testing.T) {
	base := func() Config {
		return Config{
			Listen: "127.0.0.1:0", H2C: true, HTTP2: HTTP2Config{Server: HTTP2ServerLoop},
			Upstreams: []UpstreamConfig{{Name: "a", Targets: []TargetConfig{{Address: "x:1"}}}},
			Routes:    []RouteConfig{{ID: "r", Upstream: "a"}},
		}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("h2c on the loops refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"neither tls nor h2c", func(c *Config) { c.H2C = false }, `gateway.http2.server: loop serves HTTP/2 clients over tls, or h2c ones with h2c: true; neither is set`},
		{"engine lean", func(c *Config) { c.Engine = EngineLean }, `gateway.http2.server: loop needs engine auto or loop, not lean`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || err.Error() != tc.want {
				t.Errorf("Validate: %v, want %s", err, tc.want)
			}
		})
	}
	if !servesOnLoops(base()) {
		t.Error("h2c with http2.server loop is not served on the loops")
	}
	overTLS := base()
	overTLS.H2C, overTLS.TLS = false, TLSConfig{CertFile: "c", KeyFile: "k"}
	if err := overTLS.Validate(); err != nil || !servesOnLoops(overTLS) {
		t.Errorf("HTTP/2 over TLS on the loops: %v, served on the loops %v", err, servesOnLoops(overTLS))
	}
}
