package sim

// fifo is the plant's service as a fluid queue: work admitted in one slice
// of time is a cohort, served first in first out at capacity flows per
// second, so a cohort's latency is its wait behind the cohorts before it
// plus the base latency, known when it completes.
type fifo struct {
	capacity float64 // flows per second
	base     float64 // seconds
	good     float64 // seconds: the latency bound of goodput
	queue    []cohort
}

type cohort struct {
	at   float64 // admitted, seconds since the start
	left float64 // flows not yet served
}

// tickStats are the flows of one tick.
type tickStats struct {
	count    float64 // completed
	latency  float64 // sum over the completed flows, seconds
	good     float64 // completed within the goodput bound
	offered  float64 // per second
	admitted float64 // per second
}

// slices is how finely a tick is cut: latency is resolved to dt/slices.
const slices = 100

// run admits rate flows per second for dt seconds from t and serves the
// queue meanwhile.
func (f *fifo) run(t, dt, rate float64) tickStats {
	var st tickStats
	h := dt / slices
	for i := 0; i < slices; i++ {
		now := t + float64(i)*h
		if rate > 0 {
			f.queue = append(f.queue, cohort{at: now, left: rate * h})
		}
		budget := f.capacity * h
		for budget > 0 && len(f.queue) > 0 {
			c := &f.queue[0]
			n := min(c.left, budget)
			lat := now - c.at + f.base
			st.count += n
			st.latency += n * lat
			if lat <= f.good {
				st.good += n
			}
			c.left -= n
			budget -= n
			if c.left <= 1e-12 {
				f.queue = f.queue[1:]
			}
		}
	}
	return st
}

func (f *fifo) backlog() float64 {
	b := 0.0
	for _, c := range f.queue {
		b += c.left
	}
	return b
}
