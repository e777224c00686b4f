package sim

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// flowRun is Closed's plant, flow by flow in virtual time:
//
//   - clients send open loop, evenly spaced, and give up Timeout after a
//     flow's intended send time;
//   - the policy's samplers and rate limiters pass a share of the flows,
//     then each load scheduler queues them as the agent's does
//     (loadScheduler);
//   - the service's workers serve what was admitted first in first out,
//     and finish work whose client has gone;
//   - the flux meter observes each admitted flow when it ends (served, or
//     its client gone), its latency counted from its admission;
//   - every ScrapeInterval, ScrapeOffset after a tick, the counters
//     are sampled, and each tick's queries are rates over the samples of the
//     last Window, as PromQL's rate() reads a scraped TSDB.
type flowRun struct {
	p   *Plant
	pol *policies.Policy
	m   *model
	rng *rand.Rand

	ev  events
	seq int
	now time.Duration

	scheds    []*loadScheduler
	tickets   map[*scheduler.Ticket]*flow
	sampleAcc float64 // samplers' share owed, for deterministic thinning
	rlTokens  float64 // rate limiters' bucket
	rlLast    time.Duration
	rlPrimed  bool

	workers int
	service time.Duration
	busy    int
	fifo    []*flow

	// Counters as the agent's metrics hold them.
	fmCount, fmSumMs, decisions, admitted float64
	samples                               []sample
	completed                             []float64 // served_rps at each tick, for peak_served_rps

	judged []judged // by the tick of the intended send time
	rows   [][]float64
}

// flow is one request.
type flow struct {
	sent       time.Duration
	workload   string
	stage      int // the load scheduler it waits in or goes to next
	ticket     *scheduler.Ticket
	admittedAt time.Duration
	state      flowState
}

type flowState uint8

const (
	flowWaiting  flowState = iota // at a load scheduler
	flowUpstream                  // admitted: queued at or served by the service
	flowDone                      // ended: answered, rejected or given up
)

// sample is the counters at a scrape.
type sample struct {
	at                                    time.Duration
	fmCount, fmSumMs, decisions, admitted float64
}

// judged counts flows by the tick of their intended send time, as
// test/protect does.
type judged struct {
	good, rejected, timeouts float64
}

func newFlowRun(pol *policies.Policy, p *Plant, m *model) *flowRun {
	r := &flowRun{p: p, pol: pol, m: m, rng: rand.New(rand.NewPCG(p.Seed, 0x5eed)), tickets: map[*scheduler.Ticket]*flow{}}
	for i, c := range pol.Spec.Circuit.Components {
		if c == nil {
			continue
		}
		if ls, ok := c.Spec.(*policies.LoadScheduler); ok {
			r.scheds = append(r.scheds, newLoadScheduler(i, ls))
		}
	}
	r.workers = max(1, int(math.Round(p.Capacity*p.BaseLatency.Seconds())))
	r.service = time.Duration(float64(r.workers) / p.Capacity * float64(time.Second))
	return r
}

// run plays the plant for p.Duration (and the flows sent in it to their
// end) and returns the rows of the table.
func (r *flowRun) run() [][]float64 {
	dt := r.m.c.Interval()
	ticks := int(r.p.Duration / dt)
	r.judged = make([]judged, ticks)
	for n := range ticks {
		r.push(time.Duration(n)*dt, func() { r.tick(n) })
	}
	for s := r.p.ScrapeOffset; s < r.p.Duration; s += r.p.ScrapeInterval {
		r.push(s, r.scrape)
	}
	r.scheduleArrivals()
	for r.ev.Len() > 0 {
		e := heap.Pop(&r.ev).(*event)
		r.now = e.at
		e.fn()
	}
	// The judging columns, now that every flow has ended.
	secs := dt.Seconds()
	for n, row := range r.rows {
		j := r.judged[n]
		row[len(row)-3], row[len(row)-2], row[len(row)-1] = j.good/secs, j.rejected/secs, j.timeouts/secs
	}
	return r.rows
}

func (r *flowRun) push(at time.Duration, fn func()) {
	r.seq++
	heap.Push(&r.ev, &event{at: at, seq: r.seq, fn: fn})
}

// scheduleArrivals sends each phase's flows evenly spaced, each arrival
// scheduling the next.
func (r *flowRun) scheduleArrivals() {
	phases := r.p.Phases()
	var next func(i int, k int)
	next = func(i, k int) {
		for ; i < len(phases); i, k = i+1, 0 {
			ph := phases[i]
			end := r.p.Duration
			if i+1 < len(phases) {
				end = phases[i+1].At
			}
			if ph.RPS <= 0 {
				continue
			}
			at := ph.At + time.Duration(float64(k)*float64(time.Second)/ph.RPS)
			if at >= end {
				continue
			}
			r.push(at, func() {
				r.arrive(&flow{sent: at, workload: r.workloadOf()})
				next(i, k+1)
			})
			return
		}
	}
	next(0, 0)
}

func (r *flowRun) workloadOf() string {
	x := r.rng.Float64()
	for _, w := range r.p.Workloads {
		if x < w.Share {
			return w.Name
		}
		x -= w.Share
	}
	return ""
}

func (r *flowRun) judge(f *flow) *judged {
	return &r.judged[min(int(f.sent/r.m.c.Interval()), len(r.judged)-1)]
}

func (r *flowRun) arrive(f *flow) {
	r.push(f.sent+r.p.Timeout, func() { r.clientGone(f) })
	// Samplers and rate limiters first: they decide at once.
	r.sampleAcc += admitFraction(r.m.act.values)
	if r.sampleAcc < 1 {
		r.reject(f)
		return
	}
	r.sampleAcc--
	if lim := rateLimit(r.pol, r.m.act.values); !math.IsInf(lim, 1) {
		if !r.rlPrimed {
			r.rlTokens, r.rlPrimed = math.Max(lim, 1), true
		}
		r.rlTokens = math.Min(r.rlTokens+(r.now-r.rlLast).Seconds()*lim, math.Max(lim, 1))
		r.rlLast = r.now
		if r.rlTokens < 1 {
			r.reject(f)
			return
		}
		r.rlTokens--
	}
	r.enter(f, 0)
}

// enter hands f to load scheduler i, or to the service after the last.
func (r *flowRun) enter(f *flow, i int) {
	f.stage = i
	if i == len(r.scheds) {
		r.decisions++
		r.admitted++
		f.state, f.admittedAt = flowUpstream, r.now
		if r.busy < r.workers {
			r.busy++
			r.push(r.now+r.serviceTime(), func() { r.served(f) })
		} else {
			r.fifo = append(r.fifo, f)
		}
		return
	}
	l := r.scheds[i]
	l.arrive(r.now)
	if !validValue(l.multiplier) {
		r.enter(f, i+1) // passes through, counted, as the agent's does
		return
	}
	r.advance(l) // a new rate admits waiting flows first
	w := l.workload(f.workload)
	timeout := scheduler.QueueTimeout(w.timeout, 1, l.bucket.rate)
	ok, t := l.gate.Arrive(Epoch.Add(r.now), scheduler.GateRequest{Workload: w.name, Weight: w.weight, Tokens: 1, Timeout: timeout})
	switch {
	case ok:
		r.enter(f, i+1)
	case t == nil:
		r.reject(f)
	default:
		f.ticket = t
		r.tickets[t] = f
		r.push(t.Deadline.Sub(Epoch), func() { r.advance(l) })
		r.wake(l)
	}
}

// advance admits l's waiting flows that its tokens allow and rejects
// those whose queue_timeout has passed.
func (r *flowRun) advance(l *loadScheduler) {
	admitted, expired := l.gate.Advance(Epoch.Add(r.now))
	for _, t := range expired {
		if f := r.tickets[t]; f != nil {
			delete(r.tickets, t)
			r.reject(f)
		}
	}
	for _, t := range admitted {
		if f := r.tickets[t]; f != nil {
			delete(r.tickets, t)
			r.enter(f, f.stage+1)
		}
	}
	r.wake(l)
}

// wake arms l's refill timer while flows wait: when the head's token
// will be there (at least 100 µs on), as the agent's scheduler does.
func (r *flowRun) wake(l *loadScheduler) {
	b := l.bucket
	if l.gate.Waiting() == 0 || b.rate <= 0 || math.IsInf(b.rate, 1) {
		return
	}
	b.refill(r.now.Seconds())
	when := r.now + max(time.Duration((1-b.tokens)/b.rate*float64(time.Second)), 100*time.Microsecond)
	if when >= l.wakeAt && l.wakeAt > r.now {
		return
	}
	l.wakeAt = when
	r.push(when, func() {
		if l.wakeAt == when {
			l.wakeAt = noWake
		}
		r.advance(l)
	})
}

func (r *flowRun) reject(f *flow) {
	r.decisions++
	f.state = flowDone
	r.judge(f).rejected++
}

func (r *flowRun) serviceTime() time.Duration {
	return time.Duration(float64(r.service) * (1 + r.p.Jitter*(2*r.rng.Float64()-1)))
}

// served: the service finished f and takes the next flow.
func (r *flowRun) served(f *flow) {
	if len(r.fifo) > 0 {
		next := r.fifo[0]
		r.fifo = r.fifo[1:]
		r.push(r.now+r.serviceTime(), func() { r.served(next) })
	} else {
		r.busy--
	}
	if f.state != flowUpstream {
		return // its client has gone; the flux meter saw it end then
	}
	f.state = flowDone
	extra := time.Duration(float64(r.p.Overhead) * r.p.offered(r.now) / 1000)
	if r.now+extra >= f.sent+r.p.Timeout {
		r.observe(f, f.sent+r.p.Timeout)
		r.judge(f).timeouts++
		return
	}
	r.observe(f, r.now+extra)
	if r.now+extra-f.sent <= r.p.GoodLatency {
		r.judge(f).good++
	}
}

// clientGone: f's client gives up, Timeout after f's intended send time.
func (r *flowRun) clientGone(f *flow) {
	switch f.state {
	case flowWaiting:
		if r.scheds[f.stage].gate.Withdraw(f.ticket) {
			delete(r.tickets, f.ticket)
			r.decisions++
		}
	case flowUpstream:
		r.observe(f, r.now) // the gateway ends the flow when its client leaves
	default:
		return
	}
	f.state = flowDone
	r.judge(f).timeouts++
}

// observe is the flux meter: f, admitted at f.admittedAt, ended at end
// (now, or within the path's overhead from now).
func (r *flowRun) observe(f *flow, end time.Duration) {
	r.fmCount++
	r.fmSumMs += float64(end-f.admittedAt) / float64(time.Millisecond)
}

func (r *flowRun) scrape() {
	r.samples = append(r.samples, sample{at: r.now, fmCount: r.fmCount, fmSumMs: r.fmSumMs, decisions: r.decisions, admitted: r.admitted})
	// Keep what a window can reach.
	for len(r.samples) > 2 && r.samples[1].at <= r.now-r.p.Window-r.p.ScrapeInterval {
		r.samples = r.samples[1:]
	}
}

// query is the plant's outputs as the circuit's queries read them now:
// rates over the samples within the last Window.
func (r *flowRun) query() map[string]float64 {
	out := map[string]float64{}
	var first, last *sample
	for i := range r.samples {
		s := &r.samples[i]
		if s.at > r.now-r.p.Window && s.at <= r.now {
			if first == nil {
				first = s
			}
			last = s
		}
	}
	for _, o := range []string{"offered_rps", "admitted_rps", "served_rps", "latency_ms"} {
		out[o] = math.NaN() // fewer than two samples: no rate
	}
	if first != nil && last != first {
		span := (last.at - first.at).Seconds()
		out["offered_rps"] = (last.decisions - first.decisions) / span
		out["admitted_rps"] = (last.admitted - first.admitted) / span
		out["served_rps"] = (last.fmCount - first.fmCount) / span
		if n := last.fmCount - first.fmCount; n > 0 {
			out["latency_ms"] = (last.fmSumMs - first.fmSumMs) / n
		}
	}
	r.completed = append(r.completed, out["served_rps"])
	peak := math.NaN()
	for _, c := range r.completed[max(0, len(r.completed)-int(time.Minute/r.m.c.Interval())):] {
		if !math.IsNaN(c) && !(c <= peak) {
			peak = c
		}
	}
	out["peak_served_rps"] = peak
	out["queue"] = float64(len(r.fifo))
	out["queue_latency_ms"] = 1000 * (r.service.Seconds() + float64(len(r.fifo))/r.p.Capacity)
	return out
}

func (r *flowRun) tick(n int) {
	outputs := r.query()
	for _, in := range r.m.inputs {
		r.m.c.SetInput(in, circuit.Value(outputs[r.p.Signals[in]]))
	}
	row := r.m.step(n)
	for _, l := range r.scheds {
		if v, ok := r.m.act.values[fmt.Sprintf("%d.load_multiplier", l.index)]; ok {
			l.multiplier = v // read at its next rate update, as the agent's is
		}
	}
	row = append(row, r.m.actuatorRow()...)
	for _, o := range plantOutputs {
		row = append(row, outputs[o])
	}
	row = append(row, 0, 0, 0) // judged at the end: goodput, rejected, timeouts
	r.rows = append(r.rows, row)
}

// event is something that happens at a virtual time.
type event struct {
	at  time.Duration
	seq int
	fn  func()
}

type events []*event

func (q events) Len() int { return len(q) }
func (q events) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q events) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *events) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *events) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
