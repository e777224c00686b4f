package gateway

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

// A TrafficPolicy (seed 003) applies to the gateway upstream group that
// its spec.targetRef.name names, and to the routes whose upstream is that
// group:
//
//   - loadBalancing.algorithm and healthCheck (interval,
//     unhealthyThreshold) override the group's;
//   - canary configures each route's canary: enabled false removes it;
//     otherwise weight, match and metrics override the route's canary
//     section, whose upstream is the route's configured canary upstream,
//     else the group named "<targetRef.name>-canary";
//   - rateLimit becomes a Policy of the same namespace and name holding one
//     flow_control.rate_limiter at each route's control point (label
//     route_id), a token bucket of burstSize tokens refilled with
//     requestsPerSecond per second, per value of the keyExtractor's flow
//     label: header.<Name> is the label http.request.header.<name> (lower
//     case, "-" as "_"), ip is source.address, label.<key> is <key>.
//
// A TrafficPolicy that cannot apply (no such upstream, no route, no canary
// upstream, a group another TrafficPolicy already manages) is left out
// whole and reported; the others apply.

// trafficCompiler compiles TrafficPolicies over the file's gateway
// config. It reuses the Policy it compiled last for an unchanged
// TrafficPolicy and routes, so the engine keeps it as it is. Not safe for
// concurrent use.
type trafficCompiler struct {
	prev map[*policies.TrafficPolicy]compiledLimit
}

type compiledLimit struct {
	sig string // what the Policy was compiled from besides the TrafficPolicy
	p   *policies.Policy
}

// compile returns base with tps applied (in order), the Policies of their
// rate limits, and an error for every TrafficPolicy left out.
func (tc *trafficCompiler) compile(base Config, tps []*policies.TrafficPolicy) (Config, []*policies.Policy, []error) {
	cfg := cloneGatewayConfig(base)
	var ps []*policies.Policy
	var errs []error
	managed := map[string]policies.Key{}
	next := make(map[*policies.TrafficPolicy]compiledLimit)
	for _, tp := range tps {
		key := tp.Key()
		name := tp.Spec.TargetRef.Name
		if other, dup := managed[name]; dup {
			errs = append(errs, fmt.Errorf("trafficpolicy %s: upstream %q is already managed by trafficpolicy %s", key, name, other))
			continue
		}
		trial := cloneGatewayConfig(cfg)
		routes, err := applyTraffic(&trial, tp)
		if err == nil {
			err = trial.Validate()
		}
		var p *policies.Policy
		if err == nil && tp.Spec.RateLimit != nil {
			sig := limitSignature(trial, routes)
			if c, ok := tc.prev[tp]; ok && c.sig == sig {
				p = c.p
			} else {
				p, err = rateLimitPolicy(tp, trial, routes)
			}
			if err == nil {
				next[tp] = compiledLimit{sig: sig, p: p}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("trafficpolicy %s: %w", key, err))
			continue
		}
		cfg = trial
		managed[name] = key
		if p != nil {
			ps = append(ps, p)
		}
	}
	tc.prev = next
	return cfg, ps, errs
}

// applyTraffic applies tp to cfg and returns the indexes of the routes it
// applies to.
func applyTraffic(cfg *Config, tp *policies.TrafficPolicy) ([]int, error) {
	spec := tp.Spec
	name := spec.TargetRef.Name
	ui := slices.IndexFunc(cfg.Upstreams, func(u UpstreamConfig) bool { return u.Name == name })
	if ui < 0 {
		return nil, fmt.Errorf("spec.targetRef.name: no gateway upstream named %q", name)
	}
	var routes []int
	for i, r := range cfg.Routes {
		if r.Upstream == name {
			routes = append(routes, i)
		}
	}
	if lb := spec.LoadBalancing; lb != nil {
		u := &cfg.Upstreams[ui]
		if lb.Algorithm != "" {
			u.Algorithm = lb.Algorithm
		}
		if hc := lb.HealthCheck; hc != nil {
			h := HealthCheckConfig{}
			if u.HealthCheck != nil {
				h = *u.HealthCheck
			}
			h.Interval, h.UnhealthyThreshold = hc.Interval, hc.UnhealthyThreshold
			if h.Timeout > h.Interval {
				h.Timeout = h.Interval
			}
			u.HealthCheck = &h
		}
	}
	if (spec.Canary != nil || spec.RateLimit != nil) && len(routes) == 0 {
		return nil, fmt.Errorf("spec.targetRef.name: no gateway route sends to upstream %q, so its canary and rate limit have nowhere to apply", name)
	}
	if c := spec.Canary; c != nil {
		for _, i := range routes {
			r := &cfg.Routes[i]
			if !c.Enabled {
				r.Canary = nil
				continue
			}
			nc := CanaryConfig{}
			if r.Canary != nil {
				nc = *r.Canary
			} else {
				nc.Upstream = name + "-canary"
				if !slices.ContainsFunc(cfg.Upstreams, func(u UpstreamConfig) bool { return u.Name == nc.Upstream }) {
					return nil, fmt.Errorf("spec.canary: route %q has no canary upstream: set gateway.routes[%d].canary.upstream or add an upstream named %q", r.ID, i, nc.Upstream)
				}
			}
			nc.Weight = c.Weight
			if len(c.Match) > 0 {
				nc.Match = nil
				for _, m := range c.Match {
					var cm CanaryMatch
					if m.Header != nil {
						cm.Header = &NameValue{Name: m.Header.Name, Value: m.Header.Value}
					}
					if m.Cookie != nil {
						cm.Cookie = &NameValue{Name: m.Cookie.Name, Value: m.Cookie.Value}
					}
					nc.Match = append(nc.Match, cm)
				}
			}
			if m := c.Metrics; m != nil {
				mc := CanaryMetricsConfig{}
				if nc.Metrics != nil {
					mc = *nc.Metrics
				}
				mc.TargetErrorRate, mc.TargetP99Latency = m.TargetErrorRate, m.TargetP99Latency
				if m.MinSamples > 0 {
					mc.MinSamples = m.MinSamples
				}
				if m.Window > 0 {
					mc.Window = m.Window
				}
				nc.Metrics = &mc
			}
			r.Canary = &nc
		}
	}
	return routes, nil
}

// limitSignature is what a rate-limit Policy depends on besides its
// TrafficPolicy: the routes' ids and control points.
func limitSignature(cfg Config, routes []int) string {
	var b strings.Builder
	for _, i := range routes {
		fmt.Fprintf(&b, "%s@%s;", cfg.Routes[i].ID, controlPointOf(cfg.Routes[i]))
	}
	return b.String()
}

func controlPointOf(r RouteConfig) string {
	if r.ControlPoint == "" {
		return client.DefaultControlPoint
	}
	return r.ControlPoint
}

// rateLimitPolicy compiles tp's rateLimit for the routes.
func rateLimitPolicy(tp *policies.TrafficPolicy, cfg Config, routes []int) (*policies.Policy, error) {
	rl := tp.Spec.RateLimit
	p := &policies.Policy{}
	p.Metadata.Name, p.Metadata.Namespace = tp.Metadata.Name, tp.Metadata.Namespace
	p.Metadata.Labels = map[string]string{"fluxgate.io/compiled-from": policies.KindTrafficPolicy}
	var sels []policies.Selector
	for _, i := range routes {
		r := cfg.Routes[i]
		sels = append(sels, policies.Selector{ControlPoint: controlPointOf(r),
			LabelMatcher: &policies.LabelMatcher{MatchLabels: map[string]string{LabelRouteID: r.ID}}})
	}
	burst := float64(rl.BurstSize)
	if burst == 0 {
		burst = math.Max(1, math.Ceil(rl.RequestsPerSecond))
	}
	constant := func(v float64) *policies.InPort {
		return &policies.InPort{ConstantSignal: &policies.ConstantSignal{Value: v}}
	}
	lim := &policies.RateLimiter{
		Selectors: sels,
		InPorts:   policies.RateLimiterInPorts{BucketCapacity: constant(burst), FillAmount: constant(rl.RequestsPerSecond)},
		Parameters: policies.RateLimiterParameters{
			LimitByLabelKey: keyLabel(rl.KeyExtractor),
			Interval:        time.Second,
		},
	}
	p.Spec.Circuit.Components = []*policies.Component{{Kind: "flow_control.rate_limiter", Spec: lim}}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("spec.rateLimit: %w", err)
	}
	return p, nil
}

// keyLabel is the flow label a keyExtractor reads ("" for one bucket).
func keyLabel(extractor string) string {
	kind, arg, _ := strings.Cut(extractor, ".")
	switch kind {
	case "header":
		return flow.HeaderLabel(arg)
	case "ip":
		return flow.LabelSourceAddress
	case "label":
		return arg
	}
	return ""
}

// cloneGatewayConfig copies c deeply enough that applyTraffic never
// writes into c: the lists and the sections it replaces.
func cloneGatewayConfig(c Config) Config {
	out := c
	out.Upstreams = slices.Clone(c.Upstreams)
	out.Routes = slices.Clone(c.Routes)
	for i := range out.Routes {
		if cn := out.Routes[i].Canary; cn != nil {
			x := *cn
			x.Match = slices.Clone(cn.Match)
			out.Routes[i].Canary = &x
		}
	}
	return out
}
