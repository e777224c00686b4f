package controlpoint

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/metricnames"
)

// OtherControlPoint is the value that stands for every control point past
// the Options.MaxControlPoints cap, in metrics and in ControlPoints.
const OtherControlPoint = "__other__"

// maxLabelKeys caps the label keys remembered per control point.
const maxLabelKeys = 100

// pointTracker remembers the control points flows arrived at, with their
// label keys, for /v1/controlpoints and for the no-match counter. User
// input picks control point names and label keys, so their number and
// length are capped: at most max names of MaxControlPointBytes, each with
// maxLabelKeys keys of MaxLabelKeyBytes.
type pointTracker struct {
	max   int
	seen  atomic.Pointer[map[string]*pointStats] // copy on write; never modified once stored
	mu    sync.Mutex                             // serializes writers of seen
	other *pointStats
}

type pointStats struct {
	// name is the control point's, a copy of its own: the request's
	// may be a part of a larger string (a gRPC message, a request head)
	// that the tracker and the metric labels would keep whole.
	name    string
	checks  atomic.Uint64
	noMatch atomic.Pointer[prometheus.Counter]
	mu      sync.Mutex
	keys    map[string]struct{} // guarded by mu
}

func newPointTracker(max int) *pointTracker {
	t := &pointTracker{max: max, other: &pointStats{name: OtherControlPoint, keys: map[string]struct{}{}}}
	t.seen.Store(&map[string]*pointStats{})
	return t
}

// stats returns the record of cp, creating it while under the cap. The
// common case, a known control point, is one lock-free map read.
func (t *pointTracker) stats(cp string) (*pointStats, string) {
	if st, ok := (*t.seen.Load())[cp]; ok {
		return st, st.name
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.seen.Load()
	if st, ok := cur[cp]; ok {
		return st, st.name
	}
	if len(cur) >= t.max || len(cp) > MaxControlPointBytes || !utf8.ValidString(cp) {
		// Metric label values must be UTF-8, and user input picks the
		// names: each is bounded.
		return t.other, OtherControlPoint
	}
	next := make(map[string]*pointStats, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	st := &pointStats{name: strings.Clone(cp), keys: map[string]struct{}{}}
	next[st.name] = st
	t.seen.Store(&next)
	return st, st.name
}

// observe counts a flow at cp and, for a sample of flows, records its
// label keys: the first 16 flows and then one in 64. It returns cp's
// record.
func (t *pointTracker) observe(cp string, labels map[string]string) *pointStats {
	st, _ := t.stats(cp)
	n := st.checks.Add(1)
	if n > 16 && n%64 != 0 {
		return st
	}
	st.mu.Lock()
	for k := range labels {
		if len(st.keys) >= maxLabelKeys {
			break
		}
		if _, ok := st.keys[k]; !ok && len(k) <= MaxLabelKeyBytes && utf8.ValidString(k) {
			st.keys[strings.Clone(k)] = struct{}{} // as name: the key may be a part of a larger string
		}
	}
	st.mu.Unlock()
	return st
}

// noMatchCounter is the counter of flows at cp that nothing matched.
func (t *pointTracker) noMatchCounter(cp string, vec *prometheus.CounterVec) prometheus.Counter {
	st, label := t.stats(cp)
	if c := st.noMatch.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues("", "", label, metricnames.DecisionAccepted, metricnames.ReasonNoMatch)
	st.noMatch.Store(&c)
	return c
}

// noRampCounter counts the ramp-mode flows at cp that no ramp selected.
func (t *pointTracker) noRampCounter(cp string, vec *prometheus.CounterVec) prometheus.Counter {
	_, label := t.stats(cp)
	return vec.WithLabelValues("", "", label, metricnames.DecisionRejected, metricnames.ReasonNoMatchingRamp)
}

func (t *pointTracker) list() []api.ControlPoint {
	var out []api.ControlPoint
	add := func(name string, st *pointStats) {
		st.mu.Lock()
		keys := make([]string, 0, len(st.keys))
		for k := range st.keys {
			keys = append(keys, k)
		}
		st.mu.Unlock()
		sort.Strings(keys)
		out = append(out, api.ControlPoint{Name: name, Checks: st.checks.Load(), LabelKeys: keys})
	}
	for name, st := range *t.seen.Load() {
		add(name, st)
	}
	if t.other.checks.Load() > 0 {
		add(OtherControlPoint, t.other)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ControlPoints lists the control points flows have arrived at, with the
// label keys seen there (sampled).
func (e *Engine) ControlPoints() []api.ControlPoint { return e.points.list() }
