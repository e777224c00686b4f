package fluxmeter

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

// Span attributes FluxGate reads; they are defined with the rest of the
// flow vocabulary in controlpoint/flow, which the SDK shares.
const (
	AttrControlPoint   = flow.AttrControlPoint
	AttrFluxMeters     = flow.AttrFluxMeters
	AttrDecisionType   = flow.AttrDecisionType
	AttrHTTPStatus     = flow.AttrHTTPStatus
	AttrHTTPStatusOld  = flow.AttrHTTPStatusOld
	AttrWorkloadMillis = flow.AttrWorkloadMillis
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
	view   spanView
}

// spanView is what the processor reads of a span, filled either from a
// decoded message (Consume) or straight from the wire (ConsumeProto).
type spanView struct {
	controlPoint string
	meterNames   []string
	hasMeters    bool // fluxgate.flux_meters was present
	rejected     bool
	status       int64
	errorStatus  bool // the span's status is ERROR
	start, end   uint64
	attrs        []attr

	// Aperture's flow attributes (aperture.go).
	apertureResponse      string
	apertureWorkloadStart float64 // Unix ms; 0 when absent
	apertureFlowEnd       float64
}

// attr is one span attribute; only strings and numbers matter here.
type attr struct {
	key   string
	kind  attrKind
	str   string
	num   float64
	isInt bool
}

type attrKind uint8

const (
	attrOther attrKind = iota
	attrString
	attrNumber
)

func (v *spanView) reset() {
	*v = spanView{meterNames: v.meterNames[:0], attrs: v.attrs[:0]}
}

// Consume processes a batch of decoded OTLP resource spans. It returns how
// many spans it could not use (no control point) and an example reason,
// for the OTLP partial-success answer.
func (p *Processor) Consume(rss []*tracepb.ResourceSpans) (rejected int64, reason string) {
	set := p.meters.Load()
	sc := p.pool.Get().(*scratch)
	defer p.pool.Put(sc)
	var n int64
	for _, rs := range rss {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				n++
				viewOf(&sc.view, sp)
				if why := p.consumeView(set, sc, &sc.view); why != "" {
					rejected++
					reason = why
				}
			}
		}
	}
	p.spans.Add(float64(n))
	return rejected, reason
}

// viewOf fills v from a decoded span.
func viewOf(v *spanView, sp *tracepb.Span) {
	v.reset()
	v.start, v.end = sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
	v.errorStatus = sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
	for _, kv := range sp.GetAttributes() {
		a := attr{key: kv.GetKey()}
		switch x := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			a.kind, a.str = attrString, x.StringValue
		case *commonpb.AnyValue_DoubleValue:
			a.kind, a.num = attrNumber, x.DoubleValue
		case *commonpb.AnyValue_IntValue:
			a.kind, a.num, a.isInt = attrNumber, float64(x.IntValue), true
		case *commonpb.AnyValue_ArrayValue:
			if a.key == AttrFluxMeters {
				v.hasMeters = true
				for _, e := range x.ArrayValue.GetValues() {
					v.meterNames = append(v.meterNames, e.GetStringValue())
				}
			}
		}
		v.note(a)
	}
}

// note records an attribute and picks out the ones FluxGate reads.
func (v *spanView) note(a attr) {
	switch a.key {
	case AttrControlPoint:
		v.controlPoint = a.str
	case AttrDecisionType:
		v.rejected = a.str == metricnames.DecisionRejected
	case AttrHTTPStatus:
		if a.isInt {
			v.status = int64(a.num)
		}
	case AttrHTTPStatusOld:
		if a.isInt && v.status == 0 {
			v.status = int64(a.num)
		}
	case AttrApertureCheckResponse:
		v.apertureResponse = a.str
	case AttrApertureFlowStatus:
		v.errorStatus = v.errorStatus || a.str == "Error"
	case AttrApertureWorkloadStart:
		v.apertureWorkloadStart = a.num
	case AttrApertureFlowEnd:
		v.apertureFlowEnd = a.num
	}
	v.attrs = append(v.attrs, a)
}

func (p *Processor) consumeView(set *meterSet, sc *scratch, v *spanView) string {
	v.applyAperture()
	if v.controlPoint == "" && !v.hasMeters {
		return "span has no " + AttrControlPoint + " attribute"
	}
	sc.meters = sc.meters[:0]
	if v.hasMeters {
		for _, name := range v.meterNames {
			if m := set.byKey[name]; m != nil {
				sc.meters = append(sc.meters, m)
			} else if ms := set.byName[name]; len(ms) == 1 {
				sc.meters = append(sc.meters, ms[0])
			}
		}
	} else if p.matcher != nil && len(set.sorted) > 0 {
		clear(sc.labels)
		for i := range v.attrs {
			if v.attrs[i].kind == attrString {
				sc.labels[v.attrs[i].key] = v.attrs[i].str
			}
		}
		sc.names = p.matcher.MatchFluxMeters(v.controlPoint, sc.labels, sc.names[:0])
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

	k := seriesKey{rejected: v.rejected}
	if v.status >= 100 && v.status <= 599 {
		k.status = uint16(v.status)
	}
	k.failed = k.status >= 500 || v.errorStatus
	for _, m := range sc.meters {
		r, ok := v.reading(m.attributeKey)
		if !ok {
			m.invalid(k)
			continue
		}
		m.observe(k, r)
	}
	return ""
}

// reading is the value a meter measures: its attribute as a number, or,
// for the default workload duration when the span does not carry it, the
// span's duration in milliseconds.
func (v *spanView) reading(key string) (float64, bool) {
	for i := range v.attrs {
		if v.attrs[i].key != key {
			continue
		}
		if v.attrs[i].kind != attrNumber || isNaNOrInf(v.attrs[i].num) {
			return 0, false
		}
		return v.attrs[i].num, true
	}
	if key != AttrWorkloadMillis {
		return 0, false
	}
	if s, e := v.apertureWorkloadStart, v.apertureFlowEnd; s > 0 && e >= s && !isNaNOrInf(e) {
		return e - s, true
	}
	if v.start == 0 || v.end < v.start {
		return 0, false
	}
	return float64(v.end-v.start) / 1e6, true
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

// Flow is one finished flow reported in process (flow.Record).
type Flow = flow.Record

// Observe records f on the meters it names, as Consume records a span with
// the same attributes. It counts in fluxgate_fluxmeter_spans_total.
func (p *Processor) Observe(f Flow) {
	set := p.meters.Load()
	sc := p.pool.Get().(*scratch)
	defer p.pool.Put(sc)
	v := &sc.view
	v.reset()
	v.controlPoint, v.rejected, v.status = f.ControlPoint, f.Rejected, int64(f.Status)
	v.hasMeters = true
	v.meterNames = append(v.meterNames, f.FluxMeters...)
	v.attrs = append(v.attrs,
		attr{key: AttrControlPoint, kind: attrString, str: f.ControlPoint},
		attr{key: AttrWorkloadMillis, kind: attrNumber, num: f.WorkloadMillis},
		attr{key: "http.method", kind: attrString, str: f.Method},
		attr{key: "http.target", kind: attrString, str: f.Target},
		attr{key: "http.request.method", kind: attrString, str: f.Method},
	)
	p.spans.Inc()
	p.consumeView(set, sc, v)
}
