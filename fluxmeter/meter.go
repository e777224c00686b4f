package fluxmeter

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

// meter is one flux meter of one policy and the histograms it keeps.
type meter struct {
	key          string // namespace/policy/name
	policy       string // policy name, the policy_name label
	name         string // the flux_meter_name label
	attributeKey string
	buckets      []float64

	mu     sync.RWMutex
	series map[seriesKey]*series // guarded by mu
}

// seriesKey picks one histogram of a meter.
type seriesKey struct {
	rejected bool
	status   uint16 // HTTP status code; 0 when the flow had none
	failed   bool   // flow_status Error
}

func (k seriesKey) labels() (decision, status, flow string) {
	decision, flow = metricnames.DecisionAccepted, metricnames.FlowOK
	if k.rejected {
		decision = metricnames.DecisionRejected
	}
	if k.failed {
		flow = metricnames.FlowError
	}
	if k.status != 0 {
		status = strconv.Itoa(int(k.status))
	}
	return decision, status, flow
}

// series is one histogram: cumulative-free bucket counts, updated with
// atomics so observing never takes a lock once the series exists.
type series struct {
	counts  []atomic.Uint64 // per bucket, plus +Inf at the end; not cumulative
	count   atomic.Uint64
	sumBits atomic.Uint64
	invalid atomic.Uint64 // readings that were missing or not numeric
}

func newMeter(key, policy, name string, fm *policies.FluxMeter) *meter {
	attr := fm.AttributeKey
	if attr == "" {
		attr = policies.DefaultAttributeKey
	}
	return &meter{key: key, policy: policy, name: name, attributeKey: attr, buckets: fm.Buckets(), series: map[seriesKey]*series{}}
}

// sameShape reports whether m can take over old's histograms.
func (m *meter) sameShape(old *meter) bool {
	if m.attributeKey != old.attributeKey || len(m.buckets) != len(old.buckets) {
		return false
	}
	for i := range m.buckets {
		if m.buckets[i] != old.buckets[i] {
			return false
		}
	}
	return true
}

func (m *meter) seriesFor(k seriesKey) *series {
	m.mu.RLock()
	s := m.series[k]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.series[k]; s == nil {
		s = &series{counts: make([]atomic.Uint64, len(m.buckets)+1)}
		m.series[k] = s
	}
	return s
}

// observe records v into the histogram of k.
func (m *meter) observe(k seriesKey, v float64) {
	s := m.seriesFor(k)
	i := sort.SearchFloat64s(m.buckets, v) // first bound >= v: Prometheus buckets are "le"
	s.counts[i].Add(1)
	s.count.Add(1)
	for {
		old := s.sumBits.Load()
		if s.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (m *meter) invalid(k seriesKey) { m.seriesFor(k).invalid.Add(1) }

var (
	histDesc = prometheus.NewDesc(metricnames.FluxMeter,
		"Flux Meter histograms: the measured attribute of flows (workload duration in ms by default) by flux meter, policy, decision, HTTP status and flow status.",
		[]string{metricnames.LabelFluxMeterName, metricnames.LabelPolicyName, metricnames.LabelDecisionType, metricnames.LabelHTTPStatusCode, metricnames.LabelFlowStatus}, nil)
	invalidDesc = prometheus.NewDesc(metricnames.InvalidFluxMeterTotal,
		"Flows a flux meter selected whose measured attribute was missing or not a number.",
		[]string{metricnames.LabelFluxMeterName, metricnames.LabelPolicyName, metricnames.LabelDecisionType, metricnames.LabelHTTPStatusCode, metricnames.LabelFlowStatus}, nil)
)

// collect emits the meter's histograms and invalid counters.
func (m *meter) collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	keys := make([]seriesKey, 0, len(m.series))
	all := make([]*series, 0, len(m.series))
	for k, s := range m.series {
		keys = append(keys, k)
		all = append(all, s)
	}
	m.mu.RUnlock()
	for i, k := range keys {
		s := all[i]
		decision, status, flow := k.labels()
		if n := s.count.Load(); n > 0 {
			cum := make(map[float64]uint64, len(m.buckets))
			var acc uint64
			for b, bound := range m.buckets {
				acc += s.counts[b].Load()
				cum[bound] = acc
			}
			ch <- prometheus.MustNewConstHistogram(histDesc, n, math.Float64frombits(s.sumBits.Load()), cum,
				m.name, m.policy, decision, status, flow)
		}
		if n := s.invalid.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(invalidDesc, prometheus.CounterValue, float64(n),
				m.name, m.policy, decision, status, flow)
		}
	}
}
