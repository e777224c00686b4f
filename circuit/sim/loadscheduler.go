package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// loadScheduler is a flow_control.load_scheduler in virtual time, as the
// agent builds it (controlpoint/loadscheduler.go): every 100 ms at most, on
// a flow's arrival, its admission rate becomes load_multiplier × the
// incoming rate (smoothed, half old and half new); tokens come at that
// rate into a bucket holding a tenth of a second of it; a flow that finds
// the bucket short waits in the real weighted fair queue
// (scheduler.Gate, whose virtual-time methods this drives) up to its
// workload's queue_timeout, but at least two token intervals at the rate
// of its arrival (scheduler.QueueTimeout), then is rejected. A limit set
// while there was none starts with a full bucket.
type loadScheduler struct {
	index     int // of the component in the policy
	workloads map[string]simWorkload
	fallback  simWorkload
	gate      *scheduler.Gate
	bucket    *bucket

	multiplier  float64       // as the circuit last set it; NaN: invalid
	lastUpdate  float64       // seconds; NaN until the first flow
	arrivals    float64       // tokens requested since the last update
	arrivalRate float64       // smoothed, tokens/s; NaN until measured
	wakeAt      time.Duration // a pending wake-up, noWake when none
}

// simWorkload is a workload's place in the queue.
type simWorkload struct {
	name    string
	weight  float64
	timeout time.Duration
}

// rateUpdateEvery is how often the agent's load scheduler re-derives its
// rate (controlpoint.rateUpdateEvery).
const rateUpdateEvery = 0.1

const noWake = time.Duration(math.MaxInt64)

func newLoadScheduler(index int, spec *policies.LoadScheduler) *loadScheduler {
	wl := func(name string, p policies.WorkloadParameters) simWorkload {
		t := p.QueueTimeout
		if t == 0 {
			t = time.Second // the agent's default
		}
		return simWorkload{name: name, weight: 1 + p.Priority, timeout: t}
	}
	l := &loadScheduler{
		index:       index,
		workloads:   map[string]simWorkload{},
		fallback:    wl("default", spec.Parameters.DefaultWorkloadParameters),
		bucket:      &bucket{rate: math.Inf(1)},
		multiplier:  math.NaN(),
		lastUpdate:  math.NaN(),
		arrivalRate: math.NaN(),
		wakeAt:      noWake,
	}
	for i, w := range spec.Parameters.Workloads {
		name := w.Name
		if name == "" {
			name = fmt.Sprint(i)
		}
		l.workloads[name] = wl(name, w.Parameters)
	}
	if v, ok := spec.InPorts.LoadMultiplier.Constant(); ok {
		l.multiplier = v
	}
	l.gate = scheduler.NewGate(l.bucket, nil)
	return l
}

// workload is the scheduler's workload of that name, else its default.
func (l *loadScheduler) workload(name string) simWorkload {
	if w, ok := l.workloads[name]; ok {
		return w
	}
	return l.fallback
}

// updateRate is the agent's updateRate at now (seconds).
func (l *loadScheduler) updateRate(now float64) {
	if math.IsNaN(l.lastUpdate) {
		l.lastUpdate, l.arrivals = now, 0
		return
	}
	dt := now - l.lastUpdate
	if dt < rateUpdateEvery {
		return
	}
	l.lastUpdate = now
	observed := l.arrivals / dt
	l.arrivals = 0
	if math.IsNaN(l.arrivalRate) {
		l.arrivalRate = observed
	} else {
		l.arrivalRate = 0.5*l.arrivalRate + 0.5*observed
	}
	if !validValue(l.multiplier) {
		l.bucket.setRate(now, math.Inf(1))
		return
	}
	l.bucket.setRate(now, l.multiplier*l.arrivalRate)
}

func validValue(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// bucket is the load scheduler's token bucket (scheduler.Scheduler's),
// the Resource of its Gate.
type bucket struct {
	rate   float64 // tokens/s; +Inf: unlimited
	tokens float64
	last   float64 // seconds; 0 before the first refill
	primed bool
}

func (b *bucket) capacity() float64 {
	switch {
	case math.IsInf(b.rate, 1):
		return math.Inf(1)
	case b.rate == 0:
		return 0
	}
	return math.Max(b.rate/10, 1)
}

func (b *bucket) refill(now float64) {
	if b.primed && now > b.last && !math.IsInf(b.rate, 1) {
		b.tokens = math.Min(b.tokens+(now-b.last)*b.rate, b.capacity())
	}
	if now > b.last || !b.primed {
		b.last, b.primed = now, true
	}
}

func (b *bucket) setRate(now, rate float64) {
	if math.IsNaN(rate) || rate < 0 {
		rate = math.Inf(1)
	}
	b.refill(now)
	unlimited := math.IsInf(b.rate, 1)
	b.rate = rate
	if unlimited {
		b.tokens = b.capacity() // a first limit starts with a full bucket
	}
	b.tokens = math.Min(b.tokens, b.capacity())
}

// TryTake implements scheduler.Resource.
func (b *bucket) TryTake(now time.Time, _ string, n float64) (bool, time.Duration) {
	t := seconds(now)
	if math.IsInf(b.rate, 1) {
		return true, 0
	}
	b.refill(t)
	if b.tokens >= n {
		b.tokens -= n
		return true, 0
	}
	if b.rate == 0 {
		return false, 0 // nothing comes: the flows wait out their timeouts
	}
	return false, max(time.Duration((n-b.tokens)/b.rate*float64(time.Second)), 100*time.Microsecond)
}

// seconds is t as seconds since Epoch.
func seconds(t time.Time) float64 { return t.Sub(Epoch).Seconds() }
