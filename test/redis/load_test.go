package redis

import (
	"context"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
)

// loadResult is what overload offered by driveLoad did.
type loadResult struct {
	admitted []time.Time // when each admitted decision was made (the check's midpoint)
	total    int         // decisions
	failures int         // decisions whose limiter reported a Redis failure
}

// driveLoad runs twelve clients, spread over engines, checking control
// point ingress for client acme as fast as they can until end. The
// engines' clocks are skewed by 0, +1h and -3m in turn. pauseEvery > 0
// sleeps 100µs every pauseEvery checks so background goroutines (lazy
// sync) get the CPU on a 2-core machine.
func driveLoad(engines []*controlpoint.Engine, end time.Time, pauseEvery int) loadResult {
	skew := []time.Duration{0, time.Hour, -3 * time.Minute}
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	for g := range 12 {
		wg.Go(func() {
			e := engines[g%len(engines)]
			var d controlpoint.Decision
			var mine []time.Time
			n, failed := 0, 0
			for {
				before := time.Now()
				if before.After(end) {
					break
				}
				e.Check(context.Background(), before.Add(skew[g%len(skew)]), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "acme"}}, &d)
				after := time.Now()
				n++
				if d.Limiters[0].Failure != "" {
					failed++
				}
				if d.Accepted {
					mine = append(mine, before.Add(after.Sub(before)/2))
				}
				if pauseEvery > 0 && n%pauseEvery == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			mu.Lock()
			res.admitted = append(res.admitted, mine...)
			res.total += n
			res.failures += failed
			mu.Unlock()
		})
	}
	wg.Wait()
	return res
}

// perWindow counts the admissions in each whole second from first until
// end (a partial last second is left out).
func perWindow(admitted []time.Time, first, end time.Time) []int {
	var counts []int
	for w := first; !w.Add(time.Second).After(end); w = w.Add(time.Second) {
		n := 0
		for _, at := range admitted {
			if !at.Before(w) && at.Before(w.Add(time.Second)) {
				n++
			}
		}
		counts = append(counts, n)
	}
	return counts
}
