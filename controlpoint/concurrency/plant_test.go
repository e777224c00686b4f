package concurrency

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// This file drives a Limiter against a simulated service with a hard
// capacity, in virtual time: K workers, each taking a service time per
// request, behind a FIFO queue, and an open-loop client that sends at
// fixed intervals and measures latency from the intended send time. The
// limiter only learns what a gateway would: when each flow ends.

type event struct {
	at   time.Time
	kind int // arrival, completion, timeout
	req  *simReq
	seq  int
}

const (
	evArrival = iota
	evDone
	evTimeout
)

type events []*event

func (q events) Len() int { return len(q) }
func (q events) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
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

type simReq struct {
	sent     time.Time
	high     bool
	w        *waiter
	ticket   Ticket
	admitted bool
}

// plant is K workers behind a FIFO queue.
type plant struct {
	workers int
	service func() time.Duration
	busy    int
	fifo    []*simReq
}

type phase struct {
	rate float64 // requests per second
	dur  time.Duration
}

type second struct {
	offered, admitted, rejected, good int
	highOffered, highAdmitted         int
	lat                               []float64 // admitted latency, seconds
}

type simResult struct {
	secs  []second
	limit []float64 // limit at the end of each second
}

// simulate runs phases against the plant with the limiter and returns
// per-second counts. good is the latency bound of goodput.
func simulate(l *Limiter, p *plant, phases []phase, highShare float64, good time.Duration, seed uint64) simResult {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(seed, 1))
	var q events
	seq := 0
	push := func(at time.Time, kind int, r *simReq) {
		seq++
		heap.Push(&q, &event{at: at, kind: kind, req: r, seq: seq})
	}
	// Arrivals at their intended times.
	at := t0
	var total time.Duration
	for _, ph := range phases {
		end := at.Add(ph.dur)
		gap := time.Duration(float64(time.Second) / ph.rate)
		for ; at.Before(end); at = at.Add(gap) {
			push(at, evArrival, &simReq{sent: at, high: rng.Float64() < highShare})
		}
		total += ph.dur
	}
	res := simResult{secs: make([]second, int(total/time.Second)+1), limit: make([]float64, int(total/time.Second)+1)}
	sec := func(t time.Time) *second { return &res.secs[min(int(t.Sub(t0)/time.Second), len(res.secs)-1)] }
	var ready []*simReq // admitted from the limiter's queue, to start now
	start := func(now time.Time, r *simReq) {
		r.admitted = true
		s := sec(now) // the admission rate is counted when admissions happen
		s.admitted++
		if r.high {
			s.highAdmitted++
		}
		if p.busy < p.workers {
			p.busy++
			push(now.Add(p.service()), evDone, r)
			return
		}
		p.fifo = append(p.fifo, r)
	}
	lastSec := -1
	for q.Len() > 0 {
		e := heap.Pop(&q).(*event)
		now, r := e.at, e.req
		if s := int(now.Sub(t0) / time.Second); s != lastSec && s < len(res.limit) {
			for i := max(lastSec, 0); i <= s; i++ {
				res.limit[i] = l.State().Limit
			}
			lastSec = s
		}
		switch e.kind {
		case evArrival:
			s := sec(now)
			s.offered++
			if r.high {
				s.highOffered++
			}
			wl, weight := "low", 1.0
			if r.high {
				wl, weight = "high", 10
			}
			l.mu.Lock()
			if t, ok := l.tryLocked(now); ok {
				l.mu.Unlock()
				r.ticket = t
				start(now, r)
				continue
			}
			delay := l.queueDelayLocked()
			r.w = l.enqueueLocked(Request{Workload: wl, Weight: weight}, func(t Ticket) {
				r.ticket = t
				ready = append(ready, r)
			})
			l.mu.Unlock()
			push(now.Add(delay), evTimeout, r)
		case evTimeout:
			if r.admitted || r.w.granted {
				continue
			}
			l.mu.Lock()
			l.withdrawLocked(r.w)
			l.mu.Unlock()
			sec(r.sent).rejected++
		case evDone:
			lat := now.Sub(r.sent)
			sec(r.sent).lat = append(sec(r.sent).lat, lat.Seconds())
			if lat <= good {
				sec(now).good++ // goodput is counted when it is delivered
			}
			if len(p.fifo) > 0 {
				next := p.fifo[0]
				p.fifo = p.fifo[1:]
				push(now.Add(p.service()), evDone, next)
			} else {
				p.busy--
			}
			l.Release(now, r.ticket, false)
		}
		for len(ready) > 0 {
			r := ready[0]
			ready = ready[1:]
			start(now, r)
		}
	}
	return res
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[min(int(p*float64(len(s))), len(s)-1)]
}

// scenario is the acceptance run: half load, overload, half load.
type scenario struct {
	workers  int
	service  time.Duration
	jitter   float64 // service time × U(1-jitter, 1+jitter)
	overload float64
}

func (sc scenario) run(t *testing.T, opts Options) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	p := &plant{workers: sc.workers, service: func() time.Duration {
		return time.Duration(float64(sc.service) * (1 + sc.jitter*(2*rng.Float64()-1)))
	}}
	capacity := float64(sc.workers) / sc.service.Seconds()
	warm, hold, cool := 20*time.Second, 45*time.Second, 10*time.Second
	phases := []phase{{0.5 * capacity, warm}, {sc.overload * capacity, hold}, {0.5 * capacity, cool}}
	good := 5 * sc.service
	res := simulate(New(opts), p, phases, 0.1, good, 1)

	from, to := int(warm/time.Second), int((warm+hold)/time.Second)
	var warmOffered, warmRejected int
	for _, s := range res.secs[5:from] { // after the first seconds of learning
		warmOffered += s.offered
		warmRejected += s.rejected
	}
	var goodSum float64
	worst := math.Inf(1)
	var lat []float64
	var admitted []float64
	var highOff, highAdm int
	for i := from + 1; i < to; i++ {
		s := res.secs[i]
		g := float64(s.good) / capacity
		goodSum += g
		worst = min(worst, g)
		lat = append(lat, s.lat...)
		highOff += s.highOffered
		highAdm += s.highAdmitted
		if i >= from+5 {
			admitted = append(admitted, float64(s.admitted))
		}
	}
	goodput := goodSum / float64(to-from-1)
	mean, sd := meanSD(admitted)
	p99 := percentile(lat, 0.99)
	rec := res.secs[to+2]
	served := float64(rec.admitted) / float64(rec.offered)
	t.Logf("%d×%v overload %.0f×: goodput %.1f%% of capacity (worst second %.1f%%), admitted p99 %.1f ms, CV %.3f, shed at half load %.2f%%, high served %.1f%%, served 2 s after %.1f%%, limits %v",
		sc.workers, sc.service, sc.overload, 100*goodput, 100*worst, 1000*p99, sd/mean,
		100*float64(warmRejected)/float64(warmOffered), 100*float64(highAdm)/float64(highOff), 100*served, fmtLimits(res.limit))

	if goodput < 0.9 {
		t.Errorf("goodput %.1f%% of capacity during overload, want >= 90%%", 100*goodput)
	}
	if worst < 0.5 {
		t.Errorf("worst second's goodput %.1f%% of capacity, want >= 50%%", 100*worst)
	}
	if noLoadP99 := sc.service.Seconds() * (1 + sc.jitter); p99 > 3*noLoadP99 {
		t.Errorf("admitted p99 %.1f ms, want <= 3 × no-load p99 = %.1f ms", 1000*p99, 3000*noLoadP99)
	}
	// Counting noise alone puts the CV of a count of n near 1/√n: below
	// about 100 admissions a second, a second is too short to judge.
	if capacity >= 100 && sd/mean > 0.1 {
		t.Errorf("admitted per second varies: CV %.3f, want <= 0.1", sd/mean)
	}
	if r := float64(warmRejected) / float64(warmOffered); r > 0.001 {
		t.Errorf("%.2f%% shed at half load, want <= 0.1%%", 100*r)
	}
	if served < 0.95 {
		t.Errorf("2 s after the overload %.1f%% served, want >= 95%%", 100*served)
	}
	if hs := float64(highAdm) / float64(highOff); hs < 0.95 {
		t.Errorf("high priority (10%% of offered, within its share) got %.1f%% served, want >= 95%%", 100*hs)
	}
}

func meanSD(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

func fmtLimits(v []float64) string {
	s := ""
	for i, x := range v {
		if i%5 == 0 {
			s += fmt.Sprintf(" %.1f", x)
		}
	}
	return s
}

// TestHoldsGoodputOnAPlant is the acceptance scenario in virtual
// time, with the defaults, for services from 500 req/s of 10 ms to
// 10,000 req/s of 1 ms and 10 req/s of 500 ms.
func TestHoldsGoodputOnAPlant(t *testing.T) {
	for _, sc := range []scenario{
		{workers: 3, service: 10 * time.Millisecond, jitter: 0.1, overload: 3},
		{workers: 3, service: 10 * time.Millisecond, jitter: 0.1, overload: 5},
		{workers: 5, service: 50 * time.Millisecond, jitter: 0.1, overload: 3},
		{workers: 10, service: time.Millisecond, jitter: 0.2, overload: 3},
		{workers: 5, service: 500 * time.Millisecond, jitter: 0.1, overload: 3},
	} {
		t.Run(fmt.Sprintf("%dx%v-%gx", sc.workers, sc.service, sc.overload), func(t *testing.T) {
			sc.run(t, Options{})
		})
	}
}

// TestPlantCollapsesWithoutALimit shows the plant has teeth: with a limit
// that never binds, the overload queues in the service and goodput falls
// to nothing, which is what the scenario above guards against.
func TestPlantCollapsesWithoutALimit(t *testing.T) {
	p := &plant{workers: 3, service: func() time.Duration { return 10 * time.Millisecond }}
	res := simulate(New(Options{Initial: 1e6, Min: 1e6, Max: 1e6}), p,
		[]phase{{150, 5 * time.Second}, {900, 10 * time.Second}}, 0, 50*time.Millisecond, 1)
	good := 0
	for _, s := range res.secs[7:15] {
		good += s.good
	}
	if good > 0 {
		t.Errorf("%d requests within 50 ms in seconds 7..14 of an unlimited 3× overload, want none", good)
	}
}
