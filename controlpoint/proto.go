package controlpoint

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Bounds of a check request, so that what an unauthenticated client sends
// costs bounded work and memory. Control point names and label keys
// become metric label values and /v1/controlpoints entries; label values
// become rate-limit keys (bounded again there: ratelimit.BoundKey), feed
// selectors, extractors and Rego.
const (
	// MaxControlPointBytes is the longest control point name. Past it the
	// check API refuses the request, and flows that reach the engine by
	// other ways are counted under "__other__".
	MaxControlPointBytes = 256
	// MaxLabels is the most labels a request carries.
	MaxLabels = 256
	// MaxLabelKeyBytes is the longest label key.
	MaxLabelKeyBytes = 256
	// MaxLabelValueBytes is the longest label value: room for a large
	// header (a cookie, a JWT), 16 KiB.
	MaxLabelValueBytes = 16 << 10
)

// Errors for malformed check requests, shared by every adapter. The
// errors of RequestFromProto wrap them with the details.
var (
	ErrNoControlPoint = errors.New("control_point is required")
	ErrBadTokens      = errors.New("tokens must be a finite number >= 0")
	// ErrBadControlPoint: the name becomes a metric label value, which
	// must be UTF-8.
	ErrBadControlPoint = errors.New("control_point must be valid UTF-8")
	// ErrTooLarge: a control point name, a label or the number of labels
	// is over its bound (MaxControlPointBytes, MaxLabels,
	// MaxLabelKeyBytes, MaxLabelValueBytes).
	ErrTooLarge = errors.New("check request over its bounds")
)

// RequestFromProto validates a check request and converts it. The labels
// map is used as is (classifiers may add to it).
func RequestFromProto(in *pb.CheckRequest) (Request, error) {
	r := Request{ControlPoint: in.GetControlPoint(), Labels: in.GetLabels(), Tokens: in.GetTokens()}
	if err := ValidateRequest(&r); err != nil {
		return Request{}, err
	}
	return r, nil
}

// ValidateRequest checks a request decoded from the wire as
// RequestFromProto does: a control point, finite non-negative tokens,
// labels within their bounds.
func ValidateRequest(r *Request) error {
	cp := r.ControlPoint
	if cp == "" {
		return ErrNoControlPoint
	}
	if !utf8.ValidString(cp) {
		return ErrBadControlPoint
	}
	if len(cp) > MaxControlPointBytes {
		return fmt.Errorf("%w: control_point of %d bytes, at most %d", ErrTooLarge, len(cp), MaxControlPointBytes)
	}
	if t := r.Tokens; math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return ErrBadTokens
	}
	return checkLabels(r.Labels)
}

// checkLabels refuses labels over their bounds, naming the first one
// found (its key cut to 64 characters).
func checkLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: %d labels, at most %d", ErrTooLarge, len(labels), MaxLabels)
	}
	for k, v := range labels {
		if len(k) > MaxLabelKeyBytes {
			return fmt.Errorf("%w: label key %.64q… of %d bytes, at most %d", ErrTooLarge, k, len(k), MaxLabelKeyBytes)
		}
		if len(v) > MaxLabelValueBytes {
			return fmt.Errorf("%w: label %.64q: value of %d bytes, at most %d", ErrTooLarge, k, len(v), MaxLabelValueBytes)
		}
	}
	return nil
}
