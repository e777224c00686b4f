package fluxmeter

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fluxgate/fluxgate/policies"
)

// Span attributes FluxGate reads. Document changes in the README.
const (
	AttrControlPoint   = "fluxgate.control_point"
	AttrFluxMeters     = "fluxgate.flux_meters"
	AttrDecisionType   = "fluxgate.decision_type"
	AttrHTTPStatus     = "http.response.status_code"
	AttrHTTPStatusOld  = "http.status_code"
	AttrWorkloadMillis = policies.DefaultAttributeKey // "workload_duration_ms"
)

// Matcher finds the flux meters whose selectors match a flow, for spans
// that do not name their flux meters. The decision engine implements it.
// It appends "namespace/policy/name" keys to dst and returns it.
type Matcher interface {
	MatchFluxMeters(controlPoint string, labels map[string]string, dst []string) []string
}

// Options configures a Processor.
type Options struct {
	// Matcher resolves flux meters for spans without fluxgate.flux_meters.
	// Nil means such spans are only counted as unmatched.
	Matcher Matcher
}

// Processor turns spans into flux meter observations and exposes them as
// the flux_meter histogram family. It is a prometheus.Collector. It is safe
// for concurrent use; SetPolicies swaps the set of meters atomically.
type Processor struct {
	matcher Matcher
	meters  atomic.Pointer[meterSet]
	mu      sync.Mutex // serializes SetPolicies

	spans     prometheus.Counter
	unmatched prometheus.Counter
	pool      sync.Pool // *scratch
}

// meterSet is an immutable lookup of the loaded meters.
type meterSet struct {
	byKey  map[string]*meter   // namespace/policy/name
	byName map[string][]*meter // bare meter name, for spans that omit the policy
	sorted []*meter
}

// New returns a Processor with no flux meters.
func New(opts Options) *Processor {
	p := &Processor{
		matcher: opts.Matcher,
		spans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fluxgate_fluxmeter_spans_total",
			Help: "Spans received by the flux meter processor.",
		}),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fluxgate_fluxmeter_unmatched_spans_total",
			Help: "Spans that named no flux meter and matched none.",
		}),
	}
	p.meters.Store(&meterSet{byKey: map[string]*meter{}, byName: map[string][]*meter{}})
	p.pool.New = func() any { return &scratch{labels: map[string]string{}} }
	return p
}

// SetPolicies installs the flux meters of ps. A meter whose policy, name,
// attribute and buckets did not change keeps its histograms; the series of
// meters that are gone disappear from the next scrape.
func (p *Processor) SetPolicies(ps []*policies.Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.meters.Load()
	next := &meterSet{byKey: map[string]*meter{}, byName: map[string][]*meter{}}
	for _, pol := range ps {
		for name, fm := range pol.Spec.Resources.FluxMeters {
			key := pol.Metadata.Namespace + "/" + pol.Metadata.Name + "/" + name
			m := newMeter(key, pol.Metadata.Name, name, fm)
			if o := old.byKey[key]; o != nil && m.sameShape(o) {
				m = o
			}
			next.byKey[key] = m
			next.byName[name] = append(next.byName[name], m)
			next.sorted = append(next.sorted, m)
		}
	}
	sort.Slice(next.sorted, func(i, j int) bool { return next.sorted[i].key < next.sorted[j].key })
	p.meters.Store(next)
}

// Describe implements prometheus.Collector.
func (p *Processor) Describe(ch chan<- *prometheus.Desc) {
	p.spans.Describe(ch)
	p.unmatched.Describe(ch)
	ch <- histDesc
	ch <- invalidDesc
}

// Collect implements prometheus.Collector.
func (p *Processor) Collect(ch chan<- prometheus.Metric) {
	p.spans.Collect(ch)
	p.unmatched.Collect(ch)
	for _, m := range p.meters.Load().sorted {
		m.collect(ch)
	}
}

// scratch is per-call working memory, pooled so that steady-state ingest
// does not allocate per span.
type scratch struct {
	labels map[string]string
	names  []string
	meters []*meter
}

// Consume processes a batch of OTLP resource spans. It returns how many
// spans it could not use (no control point, or a malformed attribute) and
// an example reason, for the OTLP partial-success answer.
func (p *Processor) Consume(rss []*tracepb.ResourceSpans) (rejected int64, reason string) {
	set := p.meters.Load()
	sc := p.pool.Get().(*scratch)
	defer p.pool.Put(sc)
	var n int64
	for _, rs := range rss {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				n++
				if why := p.consumeSpan(set, sc, sp); why != "" {
					rejected++
					reason = why
				}
			}
		}
	}
	p.spans.Add(float64(n))
	return rejected, reason
}

// flowAttrs are the FluxGate attributes of one span.
type flowAttrs struct {
	controlPoint string
	meterNames   *commonpb.ArrayValue
	rejected     bool
	status       int64
}

func (p *Processor) consumeSpan(set *meterSet, sc *scratch, sp *tracepb.Span) string {
	var fa flowAttrs
	attrs := sp.GetAttributes()
	for _, kv := range attrs {
		v := kv.GetValue()
		switch kv.GetKey() {
		case AttrControlPoint:
			fa.controlPoint = v.GetStringValue()
		case AttrFluxMeters:
			fa.meterNames = v.GetArrayValue()
		case AttrDecisionType:
			fa.rejected = v.GetStringValue() == DecisionRejected
		case AttrHTTPStatus:
			fa.status = v.GetIntValue()
		case AttrHTTPStatusOld:
			if fa.status == 0 {
				fa.status = v.GetIntValue()
			}
		}
	}
	if fa.controlPoint == "" && fa.meterNames == nil {
		return "span has no " + AttrControlPoint + " attribute"
	}

	sc.meters = sc.meters[:0]
	if fa.meterNames != nil {
		for _, v := range fa.meterNames.GetValues() {
			name := v.GetStringValue()
			if m := set.byKey[name]; m != nil {
				sc.meters = append(sc.meters, m)
			} else if ms := set.byName[name]; len(ms) == 1 {
				sc.meters = append(sc.meters, ms[0])
			}
		}
	} else if p.matcher != nil && len(set.sorted) > 0 {
		clear(sc.labels)
		for _, kv := range attrs {
			if s, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
				sc.labels[kv.GetKey()] = s.StringValue
			}
		}
		sc.names = p.matcher.MatchFluxMeters(fa.controlPoint, sc.labels, sc.names[:0])
		for _, name := range sc.names {
			if m := set.byKey[name]; m != nil {
				sc.meters = append(sc.meters, m)
			}
		}
	}
	if len(sc.meters) == 0 {
		p.unmatched.Inc()
		return ""
	}

	k := seriesKey{rejected: fa.rejected}
	if fa.status >= 100 && fa.status <= 599 {
		k.status = uint16(fa.status)
	}
	k.failed = k.status >= 500 || sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
	for _, m := range sc.meters {
		v, ok := reading(sp, attrs, m.attributeKey)
		if !ok {
			m.invalid(k)
			continue
		}
		m.observe(k, v)
	}
	return ""
}

// reading is the value a meter measures: its attribute as a number, or,
// for the default workload duration when the span does not carry it, the
// span's duration in milliseconds.
func reading(sp *tracepb.Span, attrs []*commonpb.KeyValue, key string) (float64, bool) {
	for _, kv := range attrs {
		if kv.GetKey() != key {
			continue
		}
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_DoubleValue:
			return v.DoubleValue, !isNaNOrInf(v.DoubleValue)
		case *commonpb.AnyValue_IntValue:
			return float64(v.IntValue), true
		}
		return 0, false
	}
	if key != AttrWorkloadMillis {
		return 0, false
	}
	start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
	if start == 0 || end < start {
		return 0, false
	}
	return float64(end-start) / 1e6, true
}

func isNaNOrInf(f float64) bool { return f != f || f > 1e308 || f < -1e308 }

// Names lists the loaded meters as "namespace/policy/name".
func (p *Processor) Names() []string {
	var out []string
	for _, m := range p.meters.Load().sorted {
		out = append(out, m.key)
	}
	return out
}
