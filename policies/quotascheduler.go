package policies

import (
	"fmt"
	"time"
)

func init() {
	RegisterComponent("flow_control.quota_scheduler", func() any { return &QuotaScheduler{} })
}

// QuotaScheduler is the flow_control.quota_scheduler component (Aperture's
// quota scheduler): a token bucket per value of limit_by_label_key, as the
// rate limiter's (bucket_capacity, fill_amount per interval), whose tokens
// are handed out by a weighted fair queue. A flow that finds its bucket
// short waits, behind the flows of its key by workload priority, until
// the bucket holds its tokens or its workload's queue_timeout passes
// (never past the caller's deadline); only then is it rejected, with
// REJECT_REASON_NO_TOKENS. Under contention the workloads share the quota
// in proportion to 1 + priority.
type QuotaScheduler struct {
	Selectors   []Selector          `yaml:"selectors"`
	InPorts     RateLimiterInPorts  `yaml:"in_ports"`
	RateLimiter QuotaBuckets        `yaml:"rate_limiter"`
	Scheduler   SchedulerParameters `yaml:"scheduler,omitempty"`
	// DryRun admits every flow at once and counts those that would have
	// waited for tokens the bucket did not hold.
	DryRun bool `yaml:"dry_run,omitempty"`
}

// QuotaBuckets are a quota scheduler's token buckets: the local buckets
// of the rate limiter, with the same meaning.
type QuotaBuckets struct {
	// LimitByLabelKey keys the buckets (and queues) by the value of this
	// flow label; flows without it share the bucket "unknown". Unset: one
	// bucket.
	LimitByLabelKey string        `yaml:"limit_by_label_key,omitempty"`
	Interval        time.Duration `yaml:"interval"`
	// ContinuousFill spreads fill_amount over the interval (default true);
	// false adds it whole at each interval boundary.
	ContinuousFill *bool `yaml:"continuous_fill,omitempty"`
	// MaxIdleTime drops buckets unused this long (default 2h).
	MaxIdleTime time.Duration `yaml:"max_idle_time,omitempty"`
	// DelayInitialFill starts buckets empty instead of full.
	DelayInitialFill bool `yaml:"delay_initial_fill,omitempty"`
}

// Continuous reports whether the buckets fill continuously.
func (b *QuotaBuckets) Continuous() bool { return b.ContinuousFill == nil || *b.ContinuousFill }

// Validate implements the component registry's validation hook.
func (q *QuotaScheduler) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, q.Selectors)
	errs = checkInPort(errs, "bucket_capacity", q.InPorts.BucketCapacity, true)
	errs = checkInPort(errs, "fill_amount", q.InPorts.FillAmount, true)
	errs = checkInPort(errs, "pass_through", q.InPorts.PassThrough, false)
	for _, p := range []struct {
		name string
		port *InPort
	}{{"bucket_capacity", q.InPorts.BucketCapacity}, {"fill_amount", q.InPorts.FillAmount}} {
		if v, ok := p.port.Constant(); ok && v < 0 {
			errs = append(errs, fmt.Errorf("in_ports.%s.constant_signal must not be negative, got %v", p.name, v))
		}
	}
	if q.RateLimiter.Interval <= 0 {
		errs = append(errs, fmt.Errorf("rate_limiter.interval is required and must be positive"))
	}
	if q.RateLimiter.MaxIdleTime < 0 {
		errs = append(errs, fmt.Errorf("rate_limiter.max_idle_time must not be negative"))
	}
	return checkScheduler(errs, "scheduler", q.Scheduler)
}
