package concurrency

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// The acceptance scenario of the in-path loop, in virtual time (Simulate).

// scenario is the acceptance run: half load, overload, half load.
type scenario struct {
	workers  int
	service  time.Duration
	jitter   float64 // service time × U(1-jitter, 1+jitter)
	overload float64
}

func (sc scenario) run(t *testing.T, opts Options) {
	t.Helper()
	capacity := float64(sc.workers) / sc.service.Seconds()
	warm, hold, cool := 20*time.Second, 45*time.Second, 10*time.Second
	phases := []SimPhase{{0.5 * capacity, warm}, {sc.overload * capacity, hold}, {0.5 * capacity, cool}}
	res := Simulate(New(opts), SimPlant{Workers: sc.workers, Service: sc.service, Jitter: sc.jitter}, phases,
		SimOptions{Good: 5 * sc.service, HighShare: 0.1, Seed: 7})

	from, to := int(warm/time.Second), int((warm+hold)/time.Second)
	var warmOffered, warmRejected int
	for _, s := range res.Seconds[5:from] { // after the first seconds of learning
		warmOffered += s.Offered
		warmRejected += s.Rejected
	}
	var goodSum float64
	worst := math.Inf(1)
	var lat []float64
	var admitted []float64
	var highOff, highAdm int
	for i := from + 1; i < to; i++ {
		s := res.Seconds[i]
		g := float64(s.Good) / capacity
		goodSum += g
		worst = min(worst, g)
		lat = append(lat, s.Latencies...)
		highOff += s.HighOffered
		highAdm += s.HighAdmitted
		if i >= from+5 {
			admitted = append(admitted, float64(s.Admitted))
		}
	}
	goodput := goodSum / float64(to-from-1)
	mean, sd := meanSD(admitted)
	p99 := Quantile(lat, 0.99)
	rec := res.Seconds[to+2]
	served := float64(rec.Admitted) / float64(rec.Offered)
	t.Logf("%d×%v overload %g×: goodput %.1f%% of capacity (worst second %.1f%%), admitted p99 %.1f ms, CV %.3f, shed at half load %.2f%%, high served %.1f%%, served 2 s after %.1f%%, limits %v",
		sc.workers, sc.service, sc.overload, 100*goodput, 100*worst, 1000*p99, sd/mean,
		100*float64(warmRejected)/float64(warmOffered), 100*float64(highAdm)/float64(highOff), 100*served, fmtLimits(res))

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

func fmtLimits(r SimResult) string {
	s := ""
	for i, sec := range r.Seconds {
		if i%5 == 0 {
			s += fmt.Sprintf(" %.1f", sec.Limit)
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
		{workers: 3, service: 10 * time.Millisecond, jitter: 0.1, overload: 1.2},
		{workers: 5, service: 50 * time.Millisecond, jitter: 0.1, overload: 1.2},
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
	res := Simulate(New(Options{Initial: 1e6, Min: 1e6, Max: 1e6}), SimPlant{Workers: 3, Service: 10 * time.Millisecond},
		[]SimPhase{{150, 5 * time.Second}, {900, 10 * time.Second}}, SimOptions{Good: 50 * time.Millisecond})
	good := 0
	for _, s := range res.Seconds[7:15] {
		good += s.Good
	}
	if good > 0 {
		t.Errorf("%d requests within 50 ms in seconds 7..14 of an unlimited 3× overload, want none", good)
	}
}
