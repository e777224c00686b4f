package flow

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// intHeader is a HeaderIntSetter that keeps what it was given, numbers
// as they would be written.
type intHeader struct {
	http.Header
	ints int // values given through SetInt
}

func (h *intHeader) SetInt(name string, v int64) {
	h.ints++
	h.Header.Set(name, strconv.FormatInt(v, 10))
}

// A HeaderIntSetter gets the same RateLimit fields as an http.Header,
// through SetInt where the number is a whole int64 that converts exactly,
// and as text (the same as FormatFloat's) where not.
func TestSetDecisionHeadersInts(t *testing.T) {
	for _, tc := range []struct {
		limit, remaining float64
		ints             int
	}{
		{10, 9, 2},
		{1e12, 999999999999.5, 2},
		{1 << 53, 1<<53 - 1, 1}, // 2⁵³ itself goes as text
		{1e300, 7, 1},
		{5, -3, 1},
		{5, math.Copysign(0, -1), 1}, // −0 prints as "-0"
		{5, math.Inf(-1), 2},         // finite: 0
		{5, math.NaN(), 2},
	} {
		d := &Decision{Accepted: true, Decider: -1, Limiters: []LimiterDecision{{
			ComponentType: "rate_limiter", Limit: tc.limit, Remaining: tc.remaining, Reset: 1500 * time.Millisecond,
		}}}
		want := http.Header{}
		SetDecisionHeaders(want, d)
		got := &intHeader{Header: http.Header{}}
		SetDecisionHeaders(got, d)
		for _, k := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", HeaderDecision} {
			if got.Get(k) != want.Get(k) {
				t.Errorf("limit %v remaining %v: %s %q through SetInt, %q as text", tc.limit, tc.remaining, k, got.Get(k), want.Get(k))
			}
		}
		if want.Get("RateLimit-Limit") == "" && tc.limit > 0 && !math.IsInf(tc.limit, 0) {
			t.Errorf("limit %v: no RateLimit-Limit", tc.limit)
		}
		if got.ints != tc.ints {
			t.Errorf("limit %v remaining %v: %d numbers through SetInt, want %d", tc.limit, tc.remaining, got.ints, tc.ints)
		}
	}
}

// An accepted flow's RateLimit fields come from a limiter that decided:
// a global limiter that failed open knows nothing of its bucket, so its
// Remaining of 0 must not tell the client to hold back; a local_fallback
// one decided from its local bucket and counts.
func TestSetDecisionHeadersSkipFailedOpen(t *testing.T) {
	open := LimiterDecision{ComponentType: "rate_limiter", Limit: 100, Remaining: 0, Failure: "fail_open: timeout"}
	local := LimiterDecision{ComponentType: "rate_limiter", Limit: 50, Remaining: 7, Failure: "local_fallback: timeout"}
	for _, tc := range []struct {
		name      string
		limiters  []LimiterDecision
		remaining string
	}{
		{"failed open alone", []LimiterDecision{open}, ""},
		{"failed open beside one that decided", []LimiterDecision{open, {ComponentType: "rate_limiter", Limit: 10, Remaining: 3}}, "3"},
		{"local fallback", []LimiterDecision{open, local}, "7"},
	} {
		h := http.Header{}
		SetDecisionHeaders(h, &Decision{Accepted: true, Decider: -1, Limiters: tc.limiters})
		if got := h.Get("RateLimit-Remaining"); got != tc.remaining {
			t.Errorf("%s: RateLimit-Remaining %q, want %q", tc.name, got, tc.remaining)
		}
		if h.Get(HeaderDecision) != "accepted" {
			t.Errorf("%s: decision header %q", tc.name, h.Get(HeaderDecision))
		}
	}
}
