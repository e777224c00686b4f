package ui

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// Source is where History reads signals: the agent's circuit runtime.
type Source interface {
	// Policies lists the policies with a running circuit.
	Policies() []policies.Key
	// Signals is the latest reading of every signal of a policy's circuit.
	Signals(policies.Key) ([]circuit.Reading, bool)
}

// Defaults of History's bounds.
const (
	DefaultHistoryPoints = 900         // 15 minutes at one sample a second
	DefaultSampleEvery   = time.Second // the page polls as often
	DefaultMaxSignals    = 1024        // 1024 × 900 × 16 B ≈ 14.7 MB at most
)

// History keeps the recent values of every signal of every running
// circuit in a ring of fixed length, sampled every SampleEvery. A sample
// costs 16 bytes (time in ms, value; NaN while invalid), so History holds
// at most points × maxSignals × 16 bytes. Signals beyond maxSignals are
// not recorded and counted in Dropped. A policy's rings go when its
// circuit stops; a signal's when a reload removes it.
type History struct {
	src        Source
	points     int
	maxSignals int

	mu      sync.Mutex
	rings   map[policies.Key]map[string]*ring // guarded by mu
	signals int                               // rings held; guarded by mu
	dropped int                               // signals without a ring at the last Sample; guarded by mu
}

// NewHistory returns an empty History of rings of points samples for at
// most maxSignals signals; values ≤ 0 mean the defaults.
func NewHistory(src Source, points, maxSignals int) *History {
	if points <= 0 {
		points = DefaultHistoryPoints
	}
	if maxSignals <= 0 {
		maxSignals = DefaultMaxSignals
	}
	return &History{src: src, points: points, maxSignals: maxSignals, rings: map[policies.Key]map[string]*ring{}}
}

// ring is a fixed-size circular buffer of samples.
type ring struct {
	t    []int64   // unix ms
	v    []float64 // NaN while invalid
	next int       // where the next sample goes
	n    int       // samples held, ≤ len(t)
}

func newRing(size int) *ring { return &ring{t: make([]int64, size), v: make([]float64, size)} }

func (r *ring) add(t int64, v float64) {
	r.t[r.next], r.v[r.next] = t, v
	r.next = (r.next + 1) % len(r.t)
	if r.n < len(r.t) {
		r.n++
	}
}

// since appends, oldest first, the samples after t (unix ms).
func (r *ring) since(t int64, ts []int64, vs []*float64) ([]int64, []*float64) {
	start := (r.next - r.n + len(r.t)) % len(r.t)
	for i := 0; i < r.n; i++ {
		j := (start + i) % len(r.t)
		if r.t[j] <= t {
			continue
		}
		ts = append(ts, r.t[j])
		if math.IsNaN(r.v[j]) {
			vs = append(vs, nil)
		} else {
			v := r.v[j]
			vs = append(vs, &v)
		}
	}
	return ts, vs
}

// Sample records the current reading of every signal at now.
func (h *History) Sample(now time.Time) {
	ms := now.UnixMilli()
	current := map[policies.Key][]circuit.Reading{}
	for _, k := range h.src.Policies() {
		if readings, ok := h.src.Signals(k); ok {
			current[k] = readings
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Free the rings of stopped circuits and removed signals first, so
	// that new signals find their room.
	for k, rs := range h.rings {
		readings, ok := current[k]
		if !ok {
			h.signals -= len(rs)
			delete(h.rings, k)
			continue
		}
		seen := make(map[string]bool, len(readings))
		for _, rd := range readings {
			seen[rd.Name] = true
		}
		for name := range rs {
			if !seen[name] {
				delete(rs, name)
				h.signals--
			}
		}
	}
	h.dropped = 0
	for k, readings := range current {
		rs := h.rings[k]
		if rs == nil {
			rs = map[string]*ring{}
			h.rings[k] = rs
		}
		for _, rd := range readings {
			r := rs[rd.Name]
			if r == nil {
				if h.signals >= h.maxSignals {
					h.dropped++
					continue
				}
				r = newRing(h.points)
				rs[rd.Name] = r
				h.signals++
			}
			v := rd.Value
			if !rd.Valid || math.IsInf(v, 0) {
				v = math.NaN()
			}
			r.add(ms, v)
		}
	}
}

// Run samples every interval until ctx is done.
func (h *History) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	h.Sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Sample(now)
		}
	}
}

// Series is the history of one signal, oldest first, with its current
// reading.
type Series struct {
	circuit.Reading
	// T are the sample times in unix milliseconds.
	T []int64 `json:"t"`
	// V are the values; null where the signal was invalid.
	V []*float64 `json:"v"`
}

// Since is the history of a policy's signals after since (unix ms; 0 for
// all of it), sorted by signal name, with their current readings; false
// when the policy has no running circuit.
func (h *History) Since(key policies.Key, since int64) ([]Series, bool) {
	readings, ok := h.src.Signals(key)
	if !ok {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Series, len(readings))
	for i, rd := range readings {
		if math.IsNaN(rd.Value) || math.IsInf(rd.Value, 0) {
			rd.Value = 0 // JSON has no NaN; Valid says what it means
		}
		out[i] = Series{Reading: rd, T: []int64{}, V: []*float64{}}
		if r := h.rings[key][rd.Name]; r != nil {
			out[i].T, out[i].V = r.since(since, out[i].T, out[i].V)
		}
	}
	return out, true
}

// Stats are History's sizes: the signals recorded, and those left out at
// the last sample for want of room.
func (h *History) Stats() (signals, dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.signals, h.dropped
}
