package gateway

import (
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Canary verdicts, the values of fluxgate_canary_verdict's verdict label.
const (
	VerdictPass   = "pass"    // enough samples, every target met
	VerdictFail   = "fail"    // enough samples, a target missed: rolled back
	VerdictNoData = "no_data" // fewer than min_samples in the window
)

var verdicts = []string{VerdictPass, VerdictFail, VerdictNoData}

// Defaults of a canary's metrics section.
const (
	DefaultCanaryMinSamples = 50
	DefaultCanaryWindow     = 30 * time.Second
)

// canaryTick is how often Run judges the canaries.
const canaryTick = 100 * time.Millisecond

// canaryRing bounds the samples a canary keeps: the verdict covers the
// window or the last canaryRing requests, whichever is shorter.
const canaryRing = 4096

// canaryState is the weight and verdict of one route's canary. Like
// target, it outlives routing snapshots: Update hands it to the new
// snapshot while the route id and its canary upstream stay the same.
//
// The effective weight is, in order: 0 while rolled back; else the weight
// a circuit (or SetCanaryWeight) set; else the configured weight.
//
// Rollback rule: a fail verdict sets the weight to 0 and latches. While
// latched, weights above 0 from a circuit are remembered but not applied
// (rollback wins). The latch clears when the verdict recovers to pass (the
// canary serves forced requests, by header or cookie, meanwhile), when a
// circuit or SetCanaryWeight sets weight 0 (the rollout is reset), or when
// the configuration changes the canary's weight or metrics. No data never
// clears it. A reset (weight 0, configuration) also drops the samples
// judged so far, so the new rollout starts with no data.
type canaryState struct {
	route  string
	logger *slog.Logger
	weight atomic.Int64 // effective percent, read by route.choose

	weightGauge prometheus.Gauge
	verdictVec  *prometheus.GaugeVec // nil when not judged
	groups      [2]groupSeries       // analysis series: primary, canary

	mu         sync.Mutex
	configured int                  // guarded by mu
	signal     int                  // circuit-set percent, -1 for none; guarded by mu
	rolledBack bool                 // guarded by mu
	metrics    *CanaryMetricsConfig // defaults filled; nil: not judged; guarded by mu
	verdict    string               // guarded by mu
	samples    []sample             // ring; guarded by mu
	next       int                  // next ring slot; guarded by mu
}

// Canary analysis groups and outcomes, the values of the group and
// outcome labels of fluxgate_canary_requests_total.
const (
	GroupPrimary = "primary"
	GroupCanary  = "canary"
	OutcomeOK    = "ok"
	OutcomeError = "error" // 5xx, or no answer from the target
)

// groupSeries are one group's analysis series. They exist, at 0, from
// the moment the route has a canary, so that a rate over a window counts
// the first request (and the first error) too.
type groupSeries struct {
	ok, failed prometheus.Counter
	duration   prometheus.Observer
}

func newCanaryState(route string, logger *slog.Logger, m *metrics) *canaryState {
	c := &canaryState{
		route: route, logger: logger, signal: -1, verdict: VerdictNoData,
		weightGauge: m.canaryWeight.WithLabelValues(route),
	}
	for i, g := range []string{GroupPrimary, GroupCanary} {
		c.groups[i] = groupSeries{
			ok:       m.canaryRequests.WithLabelValues(route, g, OutcomeOK),
			failed:   m.canaryRequests.WithLabelValues(route, g, OutcomeError),
			duration: m.canaryDuration.WithLabelValues(route, g),
		}
	}
	return c
}

// configure applies a route's canary config: a changed weight or metrics
// section clears a rollback.
func (c *canaryState) configure(cfg CanaryConfig, m *metrics) {
	var mc *CanaryMetricsConfig
	if cfg.Metrics != nil {
		x := *cfg.Metrics
		if x.MinSamples == 0 {
			x.MinSamples = DefaultCanaryMinSamples
		}
		if x.Window == 0 {
			x.Window = DefaultCanaryWindow
		}
		mc = &x
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.configured != cfg.Weight || !sameMetrics(c.metrics, mc)
	if changed && c.rolledBack {
		c.resetLocked()
		c.logger.Info("canary rollback cleared: configuration changed", "route_id", c.route, "weight", cfg.Weight)
	}
	c.configured, c.metrics = cfg.Weight, mc
	if mc == nil {
		if c.verdictVec != nil {
			c.verdictVec.DeletePartialMatch(prometheus.Labels{"route_id": c.route})
		}
		c.verdictVec, c.verdict = nil, VerdictNoData
	} else {
		c.verdictVec = m.canaryVerdict
		c.exportVerdictLocked()
	}
	c.applyLocked()
}

func sameMetrics(a, b *CanaryMetricsConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// applyLocked recomputes the effective weight.
func (c *canaryState) applyLocked() {
	w := c.configured
	if c.signal >= 0 {
		w = c.signal
	}
	if c.rolledBack {
		w = 0
	}
	c.weight.Store(int64(w))
	c.weightGauge.Set(float64(w))
}

func (c *canaryState) exportVerdictLocked() {
	for _, v := range verdicts {
		x := 0.0
		if v == c.verdict {
			x = 1
		}
		c.verdictVec.WithLabelValues(c.route, v).Set(x)
	}
}

// setSignal is the circuit's input: a percentage, or NaN (any value
// outside 0..100) for the configured weight.
func (c *canaryState) setSignal(v float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if math.IsNaN(v) || v < 0 || v > 100 {
		c.signal = -1
	} else {
		c.signal = int(math.Round(v))
	}
	if c.signal == 0 && c.rolledBack {
		c.resetLocked()
		c.logger.Info("canary rollback cleared: weight reset to 0", "route_id", c.route)
	}
	c.applyLocked()
}

// resetLocked lifts a rollback for a new rollout: the samples that failed
// the old one are dropped, so they cannot roll the new one back.
func (c *canaryState) resetLocked() {
	c.rolledBack = false
	c.samples, c.next = c.samples[:0], 0
}

// observe records a request the route's primary group, or its canary
// (canary true), served: in the analysis series of its group, and for the
// canary among the samples judged.
func (c *canaryState) observe(now time.Time, latency time.Duration, failed, canary bool) {
	g := &c.groups[0]
	if canary {
		g = &c.groups[1]
	}
	if failed {
		g.failed.Inc()
	} else {
		g.ok.Inc()
	}
	g.duration.Observe(latency.Seconds())
	if !canary {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.metrics == nil {
		return
	}
	s := sample{at: now, latency: latency, failed: failed}
	if len(c.samples) < canaryRing {
		c.samples = append(c.samples, s)
	} else {
		c.samples[c.next] = s
	}
	c.next = (c.next + 1) % canaryRing
}

// canaryStats are the numbers a verdict is made of.
type canaryStats struct {
	samples   int
	errorRate float64
	p99       time.Duration
}

// judge returns the verdict at now from the samples of the window.
func judge(m *CanaryMetricsConfig, samples []sample, now time.Time) (string, canaryStats) {
	from := now.Add(-m.Window)
	lat := make([]time.Duration, 0, len(samples))
	failed := 0
	for _, s := range samples {
		if s.at.Before(from) || s.at.After(now) {
			continue
		}
		lat = append(lat, s.latency)
		if s.failed {
			failed++
		}
	}
	st := canaryStats{samples: len(lat)}
	if len(lat) == 0 {
		return VerdictNoData, st
	}
	slices.Sort(lat)
	st.errorRate = float64(failed) / float64(len(lat))
	st.p99 = lat[int(math.Ceil(0.99*float64(len(lat))))-1]
	switch {
	case len(lat) < m.MinSamples:
		return VerdictNoData, st
	case m.TargetErrorRate > 0 && st.errorRate > m.TargetErrorRate,
		m.TargetP99Latency > 0 && st.p99 > m.TargetP99Latency:
		return VerdictFail, st
	}
	return VerdictPass, st
}

// step judges the canary at now, rolls it back on fail and lifts the
// rollback on pass, logging each transition with its numbers.
func (c *canaryState) step(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.weightGauge.Set(float64(c.weight.Load()))
	if c.metrics == nil {
		return
	}
	v, st := judge(c.metrics, c.samples, now)
	if v != c.verdict {
		c.logger.Info("canary verdict changed", "route_id", c.route, "from", c.verdict, "to", v,
			"samples", st.samples, "min_samples", c.metrics.MinSamples, "error_rate", st.errorRate,
			"target_error_rate", c.metrics.TargetErrorRate, "p99_latency", st.p99,
			"target_p99_latency", c.metrics.TargetP99Latency, "window", c.metrics.Window)
		c.verdict = v
		c.exportVerdictLocked()
	}
	switch {
	case v == VerdictFail && !c.rolledBack:
		c.rolledBack = true
		c.logger.Warn("canary rolled back to weight 0", "route_id", c.route, "weight_before", c.weight.Load(),
			"samples", st.samples, "error_rate", st.errorRate, "target_error_rate", c.metrics.TargetErrorRate,
			"p99_latency", st.p99, "target_p99_latency", c.metrics.TargetP99Latency)
		c.applyLocked()
	case v == VerdictPass && c.rolledBack:
		c.rolledBack = false
		c.applyLocked()
		c.logger.Info("canary rollback lifted: verdict recovered", "route_id", c.route, "weight", c.weight.Load(),
			"samples", st.samples, "error_rate", st.errorRate, "p99_latency", st.p99)
	}
}

// CanaryStatus is the state of one route's canary.
type CanaryStatus struct {
	Route      string `json:"route_id"`
	Upstream   string `json:"upstream"`
	Weight     int    `json:"weight"`            // effective percent
	Configured int    `json:"configured_weight"` // from the config
	Signal     *int   `json:"signal_weight,omitempty"`
	RolledBack bool   `json:"rolled_back"`
	Verdict    string `json:"verdict,omitempty"` // empty when not judged
}

func (c *canaryState) status(upstream string) CanaryStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := CanaryStatus{Route: c.route, Upstream: upstream, Weight: int(c.weight.Load()), Configured: c.configured, RolledBack: c.rolledBack}
	if c.signal >= 0 {
		x := c.signal
		s.Signal = &x
	}
	if c.metrics != nil {
		s.Verdict = c.verdict
	}
	return s
}
