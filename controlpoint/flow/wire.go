package flow

import (
	"errors"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// AppendProto appends d as the check API's response message to b, in
// protobuf's wire format: the message ToProto makes, encoded without
// building it. A server that answers many checks a second spends no
// allocation on the answer (ToProto and proto.Marshal make five or more a
// decision, and marshal through reflection).
//
// Fields are written in field-number order, zero values left out as proto3
// leaves them out; map entries (a classifier's labels) carry their key and
// value even when empty, in map order, as proto.Marshal writes them
// without Deterministic. A string that is not valid UTF-8 is an error, as
// it is proto.Marshal's, and b comes back as it was.
func (d *Decision) AppendProto(b []byte) ([]byte, error) {
	if !d.validUTF8() {
		return b, errInvalidUTF8
	}
	if d.Accepted {
		b = appendVarintField(b, 1, uint64(pb.DecisionType_DECISION_TYPE_ACCEPTED))
	} else {
		b = appendVarintField(b, 1, uint64(pb.DecisionType_DECISION_TYPE_REJECTED))
	}
	b = appendVarintField(b, 2, uint64(d.Reason))
	for i := range d.Limiters {
		l := &d.Limiters[i]
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(limiterSize(l)))
		b = appendLimiter(b, l)
	}
	if !d.Accepted {
		b = appendDurationField(b, 4, d.Wait)
		b = appendVarintField(b, 5, uint64(int64(int32(d.StatusCode))))
	}
	for _, name := range d.FluxMeters {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	for i := range d.Classifiers {
		c := &d.Classifiers[i]
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(classifierSize(c)))
		b = appendClassifier(b, c)
	}
	b = appendStringField(b, 8, d.ControlPoint)
	return appendVarintField(b, 10, d.FlowID), nil
}

var errInvalidUTF8 = errors.New("flow: a string of the decision is not valid UTF-8")

// validUTF8 reports whether every string the wire carries is valid UTF-8.
func (d *Decision) validUTF8() bool {
	ok := utf8.ValidString(d.ControlPoint)
	for _, s := range d.FluxMeters {
		ok = ok && utf8.ValidString(s)
	}
	for i := range d.Limiters {
		l := &d.Limiters[i]
		ok = ok && utf8.ValidString(l.PolicyName) && utf8.ValidString(l.PolicyNamespace) && utf8.ValidString(l.ComponentID) &&
			utf8.ValidString(l.ComponentType) && utf8.ValidString(l.LimitKey) && utf8.ValidString(l.Failure)
	}
	for i := range d.Classifiers {
		c := &d.Classifiers[i]
		ok = ok && utf8.ValidString(c.PolicyName) && utf8.ValidString(c.PolicyNamespace) && utf8.ValidString(c.Error)
		for k, v := range c.Labels {
			ok = ok && utf8.ValidString(k) && utf8.ValidString(v)
		}
	}
	return ok
}

// appendLimiter appends a LimiterDecision's fields.
func appendLimiter(b []byte, l *LimiterDecision) []byte {
	b = appendStringField(b, 1, l.PolicyName)
	b = appendStringField(b, 2, l.PolicyNamespace)
	b = appendStringField(b, 3, l.ComponentID)
	b = appendStringField(b, 4, l.ComponentType)
	b = appendBoolField(b, 5, l.Dropped)
	b = appendVarintField(b, 6, uint64(l.Reason))
	b = appendDoubleField(b, 7, finite(l.Remaining))
	b = appendDoubleField(b, 8, finite(l.Limit))
	b = appendDurationField(b, 9, l.Wait)
	b = appendDurationField(b, 10, l.Reset)
	b = appendBoolField(b, 11, l.DryRun)
	b = appendStringField(b, 12, l.LimitKey)
	return appendStringField(b, 13, l.Failure)
}

// limiterSize is the size of appendLimiter's bytes.
func limiterSize(l *LimiterDecision) int {
	return stringFieldSize(1, l.PolicyName) + stringFieldSize(2, l.PolicyNamespace) +
		stringFieldSize(3, l.ComponentID) + stringFieldSize(4, l.ComponentType) +
		boolFieldSize(l.Dropped) + varintFieldSize(6, uint64(l.Reason)) +
		doubleFieldSize(finite(l.Remaining)) + doubleFieldSize(finite(l.Limit)) +
		durationFieldSize(l.Wait) + durationFieldSize(l.Reset) + boolFieldSize(l.DryRun) +
		stringFieldSize(12, l.LimitKey) + stringFieldSize(13, l.Failure)
}

// appendClassifier appends a ClassifierResult's fields.
func appendClassifier(b []byte, c *ClassifierResult) []byte {
	b = appendStringField(b, 1, c.PolicyName)
	b = appendStringField(b, 2, c.PolicyNamespace)
	b = appendVarintField(b, 3, uint64(int64(int32(c.Index))))
	for k, v := range c.Labels {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(labelSize(k, v)))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return appendStringField(b, 5, c.Error)
}

// classifierSize is the size of appendClassifier's bytes.
func classifierSize(c *ClassifierResult) int {
	n := stringFieldSize(1, c.PolicyName) + stringFieldSize(2, c.PolicyNamespace) +
		varintFieldSize(3, uint64(int64(int32(c.Index)))) + stringFieldSize(5, c.Error)
	for k, v := range c.Labels {
		s := labelSize(k, v)
		n += 1 + protowire.SizeVarint(uint64(s)) + s
	}
	return n
}

// labelSize is the size of a map entry's message: its key and value.
func labelSize(k, v string) int {
	return 2 + protowire.SizeBytes(len(k)) + protowire.SizeBytes(len(v))
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func varintFieldSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendBoolField(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), 1)
}

// boolFieldSize is a set bool field's size (its number is below 16).
func boolFieldSize(v bool) int {
	if !v {
		return 0
	}
	return 2
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func stringFieldSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// appendDoubleField appends v unless its bits are all zero (-0 is sent,
// as proto.Marshal sends it).
func appendDoubleField(b []byte, num protowire.Number, v float64) []byte {
	if math.Float64bits(v) == 0 {
		return b
	}
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), math.Float64bits(v))
}

// doubleFieldSize is a double field's size (its number is below 16).
func doubleFieldSize(v float64) int {
	if math.Float64bits(v) == 0 {
		return 0
	}
	return 9
}

// appendDurationField appends d as a google.protobuf.Duration, left out
// where DurationProto leaves it out (zero, negative, "never").
func appendDurationField(b []byte, num protowire.Number, d time.Duration) []byte {
	if d = onWire(d); d == 0 {
		return b
	}
	secs, nanos := durationParts(d)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(varintFieldSize(1, uint64(secs))+varintFieldSize(2, uint64(nanos))))
	b = appendVarintField(b, 1, uint64(secs))
	return appendVarintField(b, 2, uint64(nanos))
}

// durationFieldSize is a duration field's size (its number is below 16).
func durationFieldSize(d time.Duration) int {
	if d = onWire(d); d == 0 {
		return 0
	}
	secs, nanos := durationParts(d)
	n := varintFieldSize(1, uint64(secs)) + varintFieldSize(2, uint64(nanos))
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

// durationParts splits a positive d as durationpb.New does.
func durationParts(d time.Duration) (secs int64, nanos int32) {
	return int64(d / time.Second), int32(d % time.Second)
}
