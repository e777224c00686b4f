package circuit

import "github.com/fluxgate/fluxgate/policies"

// The flow-control components of the policies package are actuators: a
// circuit feeds their signal ports every tick.
func init() {
	RegisterActuator("flow_control.rate_limiter", func(spec any) []InPort {
		s := spec.(*policies.RateLimiter)
		return []InPort{
			{Name: "bucket_capacity", Wire: s.InPorts.BucketCapacity},
			{Name: "fill_amount", Wire: s.InPorts.FillAmount},
		}
	})
	RegisterActuator("flow_control.sampler", func(spec any) []InPort {
		s := spec.(*policies.Sampler)
		return []InPort{{Name: "accept_percentage", Wire: s.InPorts.AcceptPercentage}}
	})
	RegisterActuator("flow_control.load_scheduler", func(spec any) []InPort {
		s := spec.(*policies.LoadScheduler)
		return []InPort{{Name: "load_multiplier", Wire: s.InPorts.LoadMultiplier}}
	})
	RegisterActuator("flow_control.adaptive_concurrency", func(spec any) []InPort {
		s := spec.(*policies.AdaptiveConcurrency)
		return []InPort{
			{Name: "latency_objective_ms", Wire: s.InPorts.LatencyObjectiveMs},
			{Name: "min_concurrency", Wire: s.InPorts.MinConcurrency},
			{Name: "max_concurrency", Wire: s.InPorts.MaxConcurrency},
		}
	})
	RegisterActuator("flow_control.quota_scheduler", func(spec any) []InPort {
		s := spec.(*policies.QuotaScheduler)
		return []InPort{
			{Name: "bucket_capacity", Wire: s.InPorts.BucketCapacity},
			{Name: "fill_amount", Wire: s.InPorts.FillAmount},
		}
	})
	RegisterActuator("flow_control.concurrency_limiter", func(spec any) []InPort {
		return []InPort{{Name: "max_concurrency", Wire: spec.(*policies.ConcurrencyLimiter).InPorts.MaxConcurrency}}
	})
	RegisterActuator("flow_control.concurrency_scheduler", func(spec any) []InPort {
		return []InPort{{Name: "max_concurrency", Wire: spec.(*policies.ConcurrencyScheduler).InPorts.MaxConcurrency}}
	})
}

// The gateway's actuators (flow_control.canary, flow_control.upstream_weight)
// go to the built-in gateway through the agent's ActuatorSink. Their specs
// live in package policies; they are registered here, with the circuit
// kinds, so the policies package's own registry stays as its tests know it.
func init() {
	policies.RegisterComponent("flow_control.canary", func() any { return &policies.CanaryActuator{} })
	policies.RegisterComponent("flow_control.upstream_weight", func() any { return &policies.UpstreamWeight{} })
	RegisterActuator("flow_control.canary", func(spec any) []InPort {
		return []InPort{{Name: "weight", Wire: spec.(*policies.CanaryActuator).InPorts.Weight}}
	})
	RegisterActuator("flow_control.upstream_weight", func(spec any) []InPort {
		return []InPort{{Name: "weight", Wire: spec.(*policies.UpstreamWeight).InPorts.Weight}}
	})
}
