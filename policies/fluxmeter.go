package policies

import (
	"math"
)

// DefaultAttributeKey is the span attribute a flux meter measures unless it
// names another.
const DefaultAttributeKey = "workload_duration_ms"

// DefaultBuckets are the histogram buckets, in milliseconds, of a flux meter
// that does not define its own.
var DefaultBuckets = []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// maxBuckets caps the number of buckets of one flux meter.
const maxBuckets = 1000

// FluxMeter measures the flows its selectors pick into a Prometheus
// histogram of one span attribute (the workload duration by default). At
// most one bucket layout is set; none means DefaultBuckets.
type FluxMeter struct {
	Selectors               []Selector               `yaml:"selectors"`
	AttributeKey            string                   `yaml:"attribute_key,omitempty"` // default "workload_duration_ms"
	StaticBuckets           *StaticBuckets           `yaml:"static_buckets,omitempty"`
	LinearBuckets           *LinearBuckets           `yaml:"linear_buckets,omitempty"`
	ExponentialBuckets      *ExponentialBuckets      `yaml:"exponential_buckets,omitempty"`
	ExponentialBucketsRange *ExponentialBucketsRange `yaml:"exponential_buckets_range,omitempty"`
}

// StaticBuckets lists the bucket upper bounds, strictly increasing.
type StaticBuckets struct {
	Buckets []float64 `yaml:"buckets"`
}

// LinearBuckets are Count buckets Start, Start+Width, ...
type LinearBuckets struct {
	Start float64 `yaml:"start"`
	Width float64 `yaml:"width"`
	Count int     `yaml:"count"`
}

// ExponentialBuckets are Count buckets Start, Start*Factor, ...
type ExponentialBuckets struct {
	Start  float64 `yaml:"start"`
	Factor float64 `yaml:"factor"`
	Count  int     `yaml:"count"`
}

// ExponentialBucketsRange are Count exponentially spaced buckets from Min to
// Max inclusive.
type ExponentialBucketsRange struct {
	Min   float64 `yaml:"min"`
	Max   float64 `yaml:"max"`
	Count int     `yaml:"count"`
}

func (f *FluxMeter) setDefaults() {
	if f.AttributeKey == "" {
		f.AttributeKey = DefaultAttributeKey
	}
	setSelectorDefaults(f.Selectors)
}

// Buckets returns the histogram's bucket upper bounds. It assumes a valid
// flux meter.
func (f *FluxMeter) Buckets() []float64 {
	switch {
	case f.StaticBuckets != nil:
		return append([]float64(nil), f.StaticBuckets.Buckets...)
	case f.LinearBuckets != nil:
		b := f.LinearBuckets
		out := make([]float64, max(b.Count, 0))
		for i := range out {
			out[i] = b.Start + float64(i)*b.Width
		}
		return out
	case f.ExponentialBuckets != nil:
		b := f.ExponentialBuckets
		out := make([]float64, max(b.Count, 0))
		for i := range out {
			out[i] = b.Start * math.Pow(b.Factor, float64(i))
		}
		return out
	case f.ExponentialBucketsRange != nil:
		b := f.ExponentialBucketsRange
		if b.Count <= 1 {
			return []float64{b.Min}
		}
		factor := math.Pow(b.Max/b.Min, 1/float64(b.Count-1))
		out := make([]float64, b.Count)
		for i := range out {
			out[i] = b.Min * math.Pow(factor, float64(i))
		}
		out[b.Count-1] = b.Max // avoid rounding drift at the top
		return out
	}
	return append([]float64(nil), DefaultBuckets...)
}

func (f *FluxMeter) validate(v *validator, p fieldPath) {
	validateSelectors(v, p.key("selectors"), f.Selectors)
	before := len(v.errs)
	var set []string
	if b := f.StaticBuckets; b != nil {
		set = append(set, "static_buckets")
		bp := p.key("static_buckets").key("buckets")
		switch {
		case len(b.Buckets) == 0:
			v.add(bp, "buckets must not be empty")
		case len(b.Buckets) > maxBuckets:
			v.add(bp, "at most %d buckets are allowed, got %d", maxBuckets, len(b.Buckets))
		}
	}
	if b := f.LinearBuckets; b != nil {
		set = append(set, "linear_buckets")
		bp := p.key("linear_buckets")
		checkCount(v, bp, b.Count, 1)
		if !(b.Width > 0) {
			v.add(bp.key("width"), "width must be greater than 0, got %v", b.Width)
		}
	}
	if b := f.ExponentialBuckets; b != nil {
		set = append(set, "exponential_buckets")
		bp := p.key("exponential_buckets")
		checkCount(v, bp, b.Count, 1)
		if !(b.Start > 0) {
			v.add(bp.key("start"), "start must be greater than 0, got %v", b.Start)
		}
		if !(b.Factor > 1) {
			v.add(bp.key("factor"), "factor must be greater than 1, got %v", b.Factor)
		}
	}
	if b := f.ExponentialBucketsRange; b != nil {
		set = append(set, "exponential_buckets_range")
		bp := p.key("exponential_buckets_range")
		checkCount(v, bp, b.Count, 2)
		if !(b.Min > 0) {
			v.add(bp.key("min"), "min must be greater than 0, got %v", b.Min)
		}
		if !(b.Max > b.Min) {
			v.add(bp.key("max"), "max must be greater than min, got %v", b.Max)
		}
	}
	if len(set) > 1 {
		v.add(p, "at most one of static_buckets, linear_buckets, exponential_buckets, exponential_buckets_range may be set; got %s", orNone(set))
		return
	}
	if len(v.errs) > before {
		return // bad parameters; checking the buckets would only repeat them
	}
	bs := f.Buckets()
	for i, b := range bs {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			v.add(bucketsPath(p, set), "bucket %d is %v; buckets must be finite", i, b)
			return
		}
		if i > 0 && !(b > bs[i-1]) {
			v.add(bucketsPath(p, set), "buckets must be strictly increasing; bucket %d (%v) is not greater than bucket %d (%v)", i, b, i-1, bs[i-1])
			return
		}
	}
}

func bucketsPath(p fieldPath, set []string) fieldPath {
	if len(set) == 0 {
		return p
	}
	if set[0] == "static_buckets" {
		return p.key("static_buckets").key("buckets")
	}
	return p.key(set[0])
}

func checkCount(v *validator, p fieldPath, count, least int) {
	if count < least || count > maxBuckets {
		v.add(p.key("count"), "count must be between %d and %d, got %d", least, maxBuckets, count)
	}
}
