package policies

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TrafficPolicy is the high-level policy of one workload: how to balance
// its traffic, rate limit it and run its canary. Keys are camelCase. It is
// compiled into a Policy plus gateway routing state.
type TrafficPolicy struct {
	Header `yaml:",inline"`
	Spec   TrafficPolicySpec `yaml:"spec"`
}

// TrafficPolicySpec is the body of a TrafficPolicy. Sections left out are
// not applied.
type TrafficPolicySpec struct {
	TargetRef     TargetRef      `yaml:"targetRef"`
	LoadBalancing *LoadBalancing `yaml:"loadBalancing,omitempty"`
	RateLimit     *RateLimit     `yaml:"rateLimit,omitempty"`
	Canary        *Canary        `yaml:"canary,omitempty"`
}

// TargetRef names the workload the policy applies to.
type TargetRef struct {
	APIGroup string `yaml:"apiGroup,omitempty"` // such as apps/v1
	Kind     string `yaml:"kind,omitempty"`     // such as Deployment
	Name     string `yaml:"name" required:"true"`
}

// Load-balancing algorithms.
const (
	RoundRobin         = "round-robin"
	WeightedRoundRobin = "weighted-round-robin"
	LeastRequest       = "least-request"
	Adaptive           = "adaptive"
)

// Algorithms lists the load-balancing algorithms.
var Algorithms = []string{RoundRobin, WeightedRoundRobin, LeastRequest, Adaptive}

// LoadBalancing spreads requests over the workload's endpoints.
type LoadBalancing struct {
	Algorithm   string       `yaml:"algorithm,omitempty"` // default round-robin
	HealthCheck *HealthCheck `yaml:"healthCheck,omitempty"`
}

// Health-check defaults.
const (
	DefaultHealthCheckInterval = 5 * time.Second
	DefaultUnhealthyThreshold  = 3
)

// HealthCheck actively probes endpoints; an endpoint failing
// UnhealthyThreshold probes in a row is taken out of rotation.
type HealthCheck struct {
	Interval           time.Duration `yaml:"interval,omitempty"`           // default 5s
	UnhealthyThreshold int           `yaml:"unhealthyThreshold,omitempty"` // default 3
}

// RateLimit is a token bucket per key (or one for all requests when
// KeyExtractor is empty).
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requestsPerSecond" required:"true"`
	BurstSize         int     `yaml:"burstSize,omitempty"`
	// KeyExtractor is "header.<Name>", "ip" or "label.<key>".
	KeyExtractor string `yaml:"keyExtractor,omitempty"`
}

// Canary sends a share of traffic, and the requests that match, to the
// canary subset, and rolls it back when its metrics miss their targets.
type Canary struct {
	Enabled bool           `yaml:"enabled"`
	Weight  int            `yaml:"weight"` // percent, 0..100
	Match   []CanaryMatch  `yaml:"match,omitempty"`
	Metrics *CanaryMetrics `yaml:"metrics,omitempty"`
}

// CanaryMatch sends requests to the canary whatever the weight. Exactly one
// field is set.
type CanaryMatch struct {
	Header *NameValueMatch `yaml:"header,omitempty"`
	Cookie *NameValueMatch `yaml:"cookie,omitempty"`
}

// NameValueMatch matches a header or cookie with an exact value.
type NameValueMatch struct {
	Name  string `yaml:"name" required:"true"`
	Value string `yaml:"value"`
}

// CanaryMetrics are the targets the canary must meet to keep its traffic:
// over the last Window, with at least MinSamples canary requests, an error
// ratio above TargetErrorRate or a p99 latency above TargetP99Latency
// rolls the canary back to weight 0. Fewer samples are no data, which
// never promotes.
type CanaryMetrics struct {
	TargetErrorRate  float64       `yaml:"targetErrorRate,omitempty"`  // 0..1; 0: errors not judged
	TargetP99Latency time.Duration `yaml:"targetP99Latency,omitempty"` // 0: no latency target
	MinSamples       int           `yaml:"minSamples,omitempty"`       // default 50 (package gateway)
	Window           time.Duration `yaml:"window,omitempty"`           // default 30s (package gateway)
}

func newTrafficPolicy() *TrafficPolicy {
	t := &TrafficPolicy{}
	t.Metadata.Namespace = DefaultNamespace
	return t
}

// SetDefaults fills every zero field that has a default: apiVersion, kind,
// namespace, algorithm and health-check settings.
func (t *TrafficPolicy) SetDefaults() {
	t.Header.setDefaults(KindTrafficPolicy)
	t.afterDecode()
}

func (t *TrafficPolicy) afterDecode() {
	if lb := t.Spec.LoadBalancing; lb != nil {
		if lb.Algorithm == "" {
			lb.Algorithm = RoundRobin
		}
		if hc := lb.HealthCheck; hc != nil {
			if hc.Interval == 0 {
				hc.Interval = DefaultHealthCheckInterval
			}
			if hc.UnhealthyThreshold == 0 {
				hc.UnhealthyThreshold = DefaultUnhealthyThreshold
			}
		}
	}
}

// Validate checks the traffic policy. The error joins *FieldError values.
func (t *TrafficPolicy) Validate() error {
	var v validator
	t.validate(&v, validateAll)
	return v.err()
}

// headerNameRE is an HTTP header field name (RFC 9110 token).
var headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

func (t *TrafficPolicy) validate(v *validator, _ validateMode) {
	t.Header.validate(v, KindTrafficPolicy)
	spec := fieldPath{"spec"}
	if t.Spec.TargetRef.Name == "" {
		v.missing(spec.key("targetRef"), "name")
	}
	if lb := t.Spec.LoadBalancing; lb != nil {
		lb.validate(v, spec.key("loadBalancing"))
	}
	if rl := t.Spec.RateLimit; rl != nil {
		rl.validate(v, spec.key("rateLimit"))
	}
	if c := t.Spec.Canary; c != nil {
		c.validate(v, spec.key("canary"))
	}
}

func (lb *LoadBalancing) validate(v *validator, p fieldPath) {
	if !slices.Contains(Algorithms, lb.Algorithm) {
		v.add(p.key("algorithm"), "unknown algorithm %q; want %s", lb.Algorithm, strings.Join(Algorithms, ", "))
	}
	if hc := lb.HealthCheck; hc != nil {
		hp := p.key("healthCheck")
		if hc.Interval < MinEvaluationInterval {
			v.add(hp.key("interval"), "interval must be at least %s, got %s", MinEvaluationInterval, hc.Interval)
		}
		if hc.UnhealthyThreshold < 1 {
			v.add(hp.key("unhealthyThreshold"), "unhealthyThreshold must be at least 1, got %d", hc.UnhealthyThreshold)
		}
	}
}

func (rl *RateLimit) validate(v *validator, p fieldPath) {
	if !(rl.RequestsPerSecond > 0) || math.IsInf(rl.RequestsPerSecond, 0) {
		v.add(p.key("requestsPerSecond"), "requestsPerSecond must be a positive number, got %v", rl.RequestsPerSecond)
	}
	if rl.BurstSize < 0 {
		v.add(p.key("burstSize"), "burstSize must not be negative, got %d", rl.BurstSize)
	}
	if msg := checkKeyExtractor(rl.KeyExtractor); msg != "" {
		v.add(p.key("keyExtractor"), "%s", msg)
	}
}

func (c *Canary) validate(v *validator, p fieldPath) {
	if c.Weight < 0 || c.Weight > 100 {
		v.add(p.key("weight"), "weight must be between 0 and 100, got %d", c.Weight)
	}
	for i, m := range c.Match {
		m.validate(v, p.key("match").index(i))
	}
	if m := c.Metrics; m != nil {
		m.validate(v, p.key("metrics"))
	}
}

func (m *CanaryMatch) validate(v *validator, mp fieldPath) {
	n := 0
	for _, nv := range []struct {
		name string
		m    *NameValueMatch
	}{{"header", m.Header}, {"cookie", m.Cookie}} {
		if nv.m == nil {
			continue
		}
		n++
		switch {
		case nv.m.Name == "":
			v.missing(mp.key(nv.name), "name")
		case nv.name == "header" && !headerNameRE.MatchString(nv.m.Name):
			v.add(mp.key(nv.name).key("name"), "invalid header name %q", nv.m.Name)
		}
	}
	if n != 1 {
		v.add(mp, "a match must set exactly one of header, cookie")
	}
}

func (m *CanaryMetrics) validate(v *validator, mp fieldPath) {
	if r := m.TargetErrorRate; !(r >= 0 && r <= 1) {
		v.add(mp.key("targetErrorRate"), "targetErrorRate must be between 0 and 1, got %v", r)
	}
	if m.TargetP99Latency < 0 {
		v.add(mp.key("targetP99Latency"), "targetP99Latency must not be negative, got %s", m.TargetP99Latency)
	}
	if m.TargetErrorRate == 0 && m.TargetP99Latency == 0 {
		v.add(mp, "set targetErrorRate, targetP99Latency or both: a canary without targets cannot fail")
	}
	if m.MinSamples < 0 {
		v.add(mp.key("minSamples"), "minSamples must not be negative, got %d", m.MinSamples)
	}
	if m.Window < 0 {
		v.add(mp.key("window"), "window must not be negative, got %s", m.Window)
	}
}

// checkKeyExtractor returns what is wrong with a rate-limit key extractor,
// or "".
func checkKeyExtractor(s string) string {
	const want = `; want "header.<Name>", "ip" or "label.<key>"`
	kind, arg, hasArg := strings.Cut(s, ".")
	switch {
	case s == "" || s == "ip":
		return ""
	case kind == "header" && hasArg:
		if !headerNameRE.MatchString(arg) {
			return "invalid keyExtractor " + strconv.Quote(s) + ": bad header name" + want
		}
		return ""
	case kind == "label" && hasArg && arg != "":
		return ""
	}
	return "invalid keyExtractor " + strconv.Quote(s) + want
}
