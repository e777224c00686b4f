package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// loadScheduler is a flow_control.load_scheduler in virtual time, as the
// agent builds it (controlpoint/loadscheduler.go): every flow counts in the
// incoming rate (the agent's own scheduler.IncomingRate, which does not
// read a lull as a low rate), and when a flow closes one of its windows
// (every 100 ms at most) the admission rate becomes load_multiplier × the
// incoming rate; tokens come at that
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

	multiplier float64 // as the circuit last set it; NaN: invalid
	incoming   scheduler.IncomingRate
	wakeAt     time.Duration // a pending wake-up, noWake when none
}

// simWorkload is a workload's place in the queue.
type simWorkload struct {
	name    string
	weight  float64
	timeout time.Duration
}

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
		index:      index,
		workloads:  map[string]simWorkload{},
		fallback:   wl("default", spec.Parameters.DefaultWorkloadParameters),
		bucket:     &bucket{rate: math.Inf(1)},
		multiplier: math.NaN(),
		wakeAt:     noWake,
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

// arrive is the agent's loadScheduler.arrive for a flow of one token at
// now: it counts the flow in the incoming rate and, when that closes a
// window, sets the bucket's rate.
func (l *loadScheduler) arrive(now time.Duration) {
	if !l.incoming.Arrive(Epoch.Add(now), 1) {
		return
	}
	if !validValue(l.multiplier) {
		l.bucket.setRate(now.Seconds(), math.Inf(1))
		return
	}
	l.bucket.setRate(now.Seconds(), l.multiplier*l.incoming.Rate())
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

func (b *bucket) capacity() float64 { return scheduler.BucketCapacity(b.rate) }

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
