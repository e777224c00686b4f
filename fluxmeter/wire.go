package fluxmeter

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the OTLP trace protobuf messages the wire decoder reads
// (opentelemetry/proto/collector/trace/v1 and trace/v1, common/v1).
const (
	fieldRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans
	fieldResourceScopeSpans   = 2 // ResourceSpans.scope_spans
	fieldScopeSpans           = 2 // ScopeSpans.spans
	fieldSpanStart            = 7 // fixed64
	fieldSpanEnd              = 8 // fixed64
	fieldSpanAttributes       = 9
	fieldSpanStatus           = 15
	fieldStatusCode           = 3
	fieldKeyValueKey          = 1
	fieldKeyValueValue        = 2
	fieldAnyString            = 1
	fieldAnyInt               = 3
	fieldAnyDouble            = 4
	fieldAnyArray             = 5
	fieldArrayValues          = 1
	statusCodeError           = 2
)

var errMalformed = errors.New("malformed OTLP trace request")

// ConsumeProto processes an ExportTraceServiceRequest in protobuf wire
// format without decoding it into messages: it reads only the span
// fields and attributes flux meters use, and its strings point into body,
// so steady-state ingest allocates nothing per span. body must not change
// during the call. A malformed body is an error and nothing of it is
// counted.
func (p *Processor) ConsumeProto(body []byte) (rejected int64, reason string, err error) {
	set := p.meters.Load()
	sc := p.pool.Get().(*scratch)
	defer p.pool.Put(sc)
	// A first pass only decodes, so that a malformed request counts nothing.
	if err := spans(body, func(span []byte) error { return viewWire(&sc.view, span) }); err != nil {
		return 0, "", err
	}
	var n int64
	_ = spans(body, func(span []byte) error {
		n++
		_ = viewWire(&sc.view, span) // checked by the first pass
		if why := p.consumeView(set, sc, &sc.view); why != "" {
			rejected++
			reason = why
		}
		return nil
	})
	p.spans.Add(float64(n))
	return rejected, reason, nil
}

// spans calls fn with every Span message of an ExportTraceServiceRequest.
func spans(body []byte, fn func(span []byte) error) error {
	return walk(body, func(num int, rs []byte) error {
		if num != fieldRequestResourceSpans {
			return nil
		}
		return walk(rs, func(num int, ss []byte) error {
			if num != fieldResourceScopeSpans {
				return nil
			}
			return walk(ss, func(num int, span []byte) error {
				if num != fieldScopeSpans {
					return nil
				}
				return fn(span)
			})
		})
	})
}

// walk calls fn with every length-delimited field of msg and checks that
// the others are well formed.
func walk(msg []byte, fn func(num int, b []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		msg = msg[n:]
		if typ == protowire.BytesType {
			b, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(m))
			}
			if err := fn(int(num), b); err != nil {
				return err
			}
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(m))
		}
		msg = msg[m:]
	}
	return nil
}

// viewWire fills v from one Span message.
func viewWire(v *spanView, span []byte) error {
	v.reset()
	for len(span) > 0 {
		num, typ, n := protowire.ConsumeTag(span)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		span = span[n:]
		switch {
		case (num == fieldSpanStart || num == fieldSpanEnd) && typ == protowire.Fixed64Type:
			x, m := protowire.ConsumeFixed64(span)
			if m < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(m))
			}
			if num == fieldSpanStart {
				v.start = x
			} else {
				v.end = x
			}
			span = span[m:]
		case (num == fieldSpanAttributes || num == fieldSpanStatus) && typ == protowire.BytesType:
			b, m := protowire.ConsumeBytes(span)
			if m < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(m))
			}
			var err error
			if num == fieldSpanAttributes {
				err = v.wireAttribute(b)
			} else {
				err = v.wireStatus(b)
			}
			if err != nil {
				return err
			}
			span = span[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, span)
			if m < 0 {
				return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(m))
			}
			span = span[m:]
		}
	}
	return nil
}

func (v *spanView) wireStatus(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) {
		if num == fieldStatusCode && typ == protowire.VarintType && x == statusCodeError {
			v.errorStatus = true
		}
	})
}

// wireAttribute reads one KeyValue.
func (v *spanView) wireAttribute(b []byte) error {
	var a attr
	var value []byte
	err := fields(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) {
		switch {
		case num == fieldKeyValueKey && typ == protowire.BytesType:
			a.key = wireString(val)
		case num == fieldKeyValueValue && typ == protowire.BytesType:
			value = val
		}
	})
	if err != nil {
		return err
	}
	isMeters := a.key == AttrFluxMeters
	err = fields(value, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) {
		switch {
		case num == fieldAnyString && typ == protowire.BytesType:
			a.kind, a.str = attrString, wireString(val)
		case num == fieldAnyInt && typ == protowire.VarintType:
			a.kind, a.num, a.isInt = attrNumber, float64(int64(x)), true
		case num == fieldAnyDouble && typ == protowire.Fixed64Type:
			a.kind, a.num = attrNumber, math.Float64frombits(x)
		case num == fieldAnyArray && typ == protowire.BytesType && isMeters:
			v.hasMeters = true
			v.wireStrings(val)
		}
	})
	if err != nil {
		return err
	}
	v.note(a)
	return nil
}

// wireStrings appends the string values of an ArrayValue to meterNames.
func (v *spanView) wireStrings(arr []byte) {
	_ = fields(arr, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) {
		if num != fieldArrayValues || typ != protowire.BytesType {
			return
		}
		_ = fields(val, func(num protowire.Number, typ protowire.Type, s []byte, _ uint64) {
			if num == fieldAnyString && typ == protowire.BytesType {
				v.meterNames = append(v.meterNames, wireString(s))
			}
		})
	})
}

// fields calls fn with every field of msg: val is the payload of a
// length-delimited field, x the value of a varint or fixed field.
func fields(msg []byte, fn func(num protowire.Number, typ protowire.Type, val []byte, x uint64)) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(n))
		}
		msg = msg[n:]
		var m int
		switch typ {
		case protowire.BytesType:
			var b []byte
			b, m = protowire.ConsumeBytes(msg)
			if m >= 0 {
				fn(num, typ, b, 0)
			}
		case protowire.VarintType:
			var x uint64
			x, m = protowire.ConsumeVarint(msg)
			if m >= 0 {
				fn(num, typ, nil, x)
			}
		case protowire.Fixed64Type:
			var x uint64
			x, m = protowire.ConsumeFixed64(msg)
			if m >= 0 {
				fn(num, typ, nil, x)
			}
		case protowire.Fixed32Type:
			var x uint32
			x, m = protowire.ConsumeFixed32(msg)
			if m >= 0 {
				fn(num, typ, nil, uint64(x))
			}
		default:
			m = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if m < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(m))
		}
		msg = msg[m:]
	}
	return nil
}

// wireString views b as a string without copying. The processor keeps no string
// beyond the call that decodes it (series are keyed by meter and numbers).
func wireString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
