package concurrency

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Simulate drives a Limiter against a service with a hard capacity, in
// virtual time, as `fluxgate sim` and this package's tests do: Workers
// workers, each busy Service per request (× U(1−Jitter, 1+Jitter)),
// behind one unbounded FIFO queue, and an open-loop client that sends at
// evenly spaced intended times and measures latency from them. The
// limiter learns only what a gateway would: when each admitted flow ends.
// A share HighShare of the flows belongs to workload "high" with ten
// times the weight of the rest ("low"). Runs with the same inputs give the
// same result.
//
// Simulate uses the limiter's own time (each call's now), never the
// Clock option; the limiter must be new and used by nothing else.
func Simulate(l *Limiter, p SimPlant, load []SimPhase, o SimOptions) SimResult {
	return newSimRun(l, p, load, o).run()
}

// SimPlant is the simulated service.
type SimPlant struct {
	Workers int           // requests served at once; at least 1
	Service time.Duration // service time of one request
	Jitter  float64       // service time × U(1−Jitter, 1+Jitter); 0..1
}

// SimPhase offers Rate requests per second, evenly spaced, for Duration.
type SimPhase struct {
	Rate     float64
	Duration time.Duration
}

// SimOptions are the client's side of a simulation.
type SimOptions struct {
	// Good bounds the latency of a flow that counts as goodput; 0 means
	// 5 × the plant's service time.
	Good time.Duration
	// HighShare is the share of flows in workload "high" (weight 10).
	HighShare float64
	// Seed makes the priorities and service times; 0 means 1.
	Seed uint64
}

// SimSecond is what happened in one second of a simulation. Offered,
// Rejected and Latencies count flows by their intended send time;
// Admitted by when the limiter admitted them, Good by when they completed.
type SimSecond struct {
	Offered, Admitted, Rejected, Good int
	HighOffered, HighAdmitted         int
	Latencies                         []float64 // admitted flows' latency, seconds
	// The limiter at the end of the second.
	Limit    float64
	NoLoad   time.Duration
	InFlight int
	Queued   int // in the plant's FIFO, admitted but not yet served
}

// SimResult is a simulation, second by second.
type SimResult struct {
	Seconds []SimSecond
}

// Quantile is the q-quantile of latencies in seconds, NaN when empty.
func Quantile(latencies []float64, q float64) float64 {
	if len(latencies) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), latencies...)
	sort.Float64s(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// simEpoch is the virtual time of a simulation's start.
var simEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	evArrival = iota
	evDone
	evTimeout
)

type simEvent struct {
	at   time.Time
	kind int
	req  *simReq
	seq  int
}

type simEvents []*simEvent

func (q simEvents) Len() int { return len(q) }
func (q simEvents) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simEvents) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simEvents) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simEvents) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simReq struct {
	sent     time.Time
	high     bool
	w        *waiter
	ticket   Ticket
	admitted bool
}

type simRun struct {
	l      *Limiter
	p      SimPlant
	o      SimOptions
	rng    *rand.Rand
	q      simEvents
	seq    int
	busy   int
	fifo   []*simReq
	ready  []*simReq // admitted from the limiter's queue, to start now
	res    SimResult
	closed int // seconds whose limiter state is recorded
}

func newSimRun(l *Limiter, p SimPlant, load []SimPhase, o SimOptions) *simRun {
	p.Workers = max(p.Workers, 1)
	p.Jitter = min(max(p.Jitter, 0), 1)
	if o.Good <= 0 {
		o.Good = 5 * p.Service
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	s := &simRun{l: l, p: p, o: o, rng: rand.New(rand.NewPCG(o.Seed, 1))}
	at := simEpoch
	var total time.Duration
	for _, ph := range load {
		end := at.Add(ph.Duration)
		if ph.Rate > 0 {
			gap := time.Duration(float64(time.Second) / ph.Rate)
			for ; at.Before(end); at = at.Add(gap) {
				s.push(at, evArrival, &simReq{sent: at, high: s.rng.Float64() < o.HighShare})
			}
		}
		at = end
		total += ph.Duration
	}
	s.res.Seconds = make([]SimSecond, max(1, int((total+time.Second-1)/time.Second)))
	return s
}

func (s *simRun) push(at time.Time, kind int, r *simReq) {
	s.seq++
	heap.Push(&s.q, &simEvent{at: at, kind: kind, req: r, seq: s.seq})
}

func (s *simRun) sec(t time.Time) *SimSecond {
	return &s.res.Seconds[min(int(t.Sub(simEpoch)/time.Second), len(s.res.Seconds)-1)]
}

func (s *simRun) service() time.Duration {
	return time.Duration(float64(s.p.Service) * (1 + s.p.Jitter*(2*s.rng.Float64()-1)))
}

// start hands an admitted flow to the plant.
func (s *simRun) start(now time.Time, r *simReq) {
	r.admitted = true
	sec := s.sec(now)
	sec.Admitted++
	if r.high {
		sec.HighAdmitted++
	}
	if s.busy < s.p.Workers {
		s.busy++
		s.push(now.Add(s.service()), evDone, r)
		return
	}
	s.fifo = append(s.fifo, r)
}

// record closes the seconds before now with the limiter's state.
func (s *simRun) record(now time.Time) {
	upTo := min(int(now.Sub(simEpoch)/time.Second), len(s.res.Seconds))
	for ; s.closed < upTo; s.closed++ {
		st := s.l.State()
		sec := &s.res.Seconds[s.closed]
		sec.Limit, sec.NoLoad, sec.InFlight, sec.Queued = st.Limit, st.NoLoad, st.InFlight, len(s.fifo)
	}
}

func (s *simRun) run() SimResult {
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(*simEvent)
		now, r := e.at, e.req
		s.record(now)
		switch e.kind {
		case evArrival:
			s.arrive(now, r)
		case evTimeout:
			if r.admitted || r.w.granted {
				continue
			}
			s.l.mu.Lock()
			s.l.withdrawLocked(r.w)
			s.l.mu.Unlock()
			s.sec(r.sent).Rejected++
		case evDone:
			lat := now.Sub(r.sent)
			s.sec(r.sent).Latencies = append(s.sec(r.sent).Latencies, lat.Seconds())
			if lat <= s.o.Good {
				s.sec(now).Good++ // goodput counts when it is delivered
			}
			if len(s.fifo) > 0 {
				next := s.fifo[0]
				s.fifo = s.fifo[1:]
				s.push(now.Add(s.service()), evDone, next)
			} else {
				s.busy--
			}
			s.l.Release(now, r.ticket, false)
		}
		for len(s.ready) > 0 {
			r := s.ready[0]
			s.ready = s.ready[1:]
			s.start(now, r)
		}
	}
	s.record(simEpoch.Add(time.Duration(len(s.res.Seconds)) * time.Second))
	return s.res
}

func (s *simRun) arrive(now time.Time, r *simReq) {
	sec := s.sec(now)
	sec.Offered++
	wl, weight := "low", 1.0
	if r.high {
		sec.HighOffered++
		wl, weight = "high", 10
	}
	l := s.l
	l.mu.Lock()
	if t, ok := l.tryLocked(now); ok {
		l.mu.Unlock()
		r.ticket = t
		s.start(now, r)
		return
	}
	delay := l.waitLocked(weight)
	r.w = l.enqueueLocked(Request{Workload: wl, Weight: weight}, func(t Ticket) {
		r.ticket = t
		s.ready = append(s.ready, r)
	})
	l.mu.Unlock()
	s.push(now.Add(delay), evTimeout, r)
}
