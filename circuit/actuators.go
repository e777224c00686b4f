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
}
