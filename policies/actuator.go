package policies

// ActuatorPort is a signal input of a flow-control component, which a
// circuit feeds every tick (a rate limiter's fill_amount, say). Wire is
// nil when the policy leaves the port unset.
type ActuatorPort struct {
	Name string
	Wire *InPort
}

// Actuator is a flow-control component spec with signal inputs: the
// circuit package finds them through it, so a new kind is described in
// its own file rather than in a registry elsewhere.
type Actuator interface {
	ActuatorPorts() []ActuatorPort
}

var (
	_ Actuator = (*RateLimiter)(nil)
	_ Actuator = (*Sampler)(nil)
	_ Actuator = (*LoadScheduler)(nil)
	_ Actuator = (*AdaptiveConcurrency)(nil)
	_ Actuator = (*QuotaScheduler)(nil)
	_ Actuator = (*ConcurrencyLimiter)(nil)
	_ Actuator = (*ConcurrencyScheduler)(nil)
	_ Actuator = (*CanaryActuator)(nil)
	_ Actuator = (*UpstreamWeight)(nil)
)

// ActuatorPorts implements Actuator.
func (s *RateLimiter) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"bucket_capacity", s.InPorts.BucketCapacity}, {"fill_amount", s.InPorts.FillAmount}, {"pass_through", s.InPorts.PassThrough}}
}

// ActuatorPorts implements Actuator.
func (s *Sampler) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"accept_percentage", s.InPorts.AcceptPercentage}}
}

// ActuatorPorts implements Actuator.
func (s *LoadScheduler) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"load_multiplier", s.InPorts.LoadMultiplier}}
}

// ActuatorPorts implements Actuator.
func (s *AdaptiveConcurrency) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{
		{"latency_objective_ms", s.InPorts.LatencyObjectiveMs},
		{"min_concurrency", s.InPorts.MinConcurrency},
		{"max_concurrency", s.InPorts.MaxConcurrency},
	}
}

// ActuatorPorts implements Actuator.
func (s *QuotaScheduler) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"bucket_capacity", s.InPorts.BucketCapacity}, {"fill_amount", s.InPorts.FillAmount}, {"pass_through", s.InPorts.PassThrough}}
}

// ActuatorPorts implements Actuator.
func (s *ConcurrencyLimiter) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"max_concurrency", s.InPorts.MaxConcurrency}, {"pass_through", s.InPorts.PassThrough}}
}

// ActuatorPorts implements Actuator.
func (s *ConcurrencyScheduler) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"max_concurrency", s.InPorts.MaxConcurrency}, {"pass_through", s.InPorts.PassThrough}}
}

// ActuatorPorts implements Actuator.
func (s *CanaryActuator) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"weight", s.InPorts.Weight}}
}

// ActuatorPorts implements Actuator.
func (s *UpstreamWeight) ActuatorPorts() []ActuatorPort {
	return []ActuatorPort{{"weight", s.InPorts.Weight}}
}
