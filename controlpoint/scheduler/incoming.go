package scheduler

import (
	"math"
	"time"
)

// RateWindow is the shortest window over which an IncomingRate takes a
// reading: a load scheduler re-derives its admission rate at most this
// often.
const RateWindow = 100 * time.Millisecond

// A silence before a flow is a lull when it lasts more than LullIntervals
// flow intervals at the estimated rate and more than LullMin.
const (
	LullIntervals = 2
	LullMin       = RateWindow
)

// IncomingRate estimates the rate at which tokens arrive at a load
// scheduler from the arrivals themselves, with no ticker. A window opens
// at a flow and closes at the first flow at least RateWindow later (that
// flow counts in the next window). Each closed window halves the weight of
// the earlier ones: the estimate is the smoothed tokens over the smoothed
// window length, so a window counts by its length and a short one does
// not read a flow or two as a high rate.
//
// # Lulls
//
// A lull is a silence before a flow longer than LullIntervals flow
// intervals at the estimated rate and than LullMin (100 ms). A window that
// ends in a lull is not a reading of the current rate: its few flows over
// the whole silence would read as a fraction of the rate that resumes, and
// a load scheduler admitting load_multiplier × that fraction would reject
// flows the multiplier has room for (test/protect lost 0.4–0.5 % of its
// first base phase so, after a pause of 150 ms between its warm-up and its
// driver). So the window is dropped: the estimate stays what it was
// before the lull, and a fresh window opens at the flow that ended it.
// The fresh window's reading replaces the estimate instead of being
// averaged with it (the flows before the lull say nothing of those after
// it), and a fresh window always closes as a reading, so sparse traffic (a
// flow every few seconds) is measured too.
//
// What a lull lets through is bounded. Until the fresh window closes
// (RateWindow, or the first flow after it), the estimate is the one from
// before the lull: never unmeasured, never unlimited. Then it is the new
// flows' rate, in full. Against the same rise in steady traffic, which the
// averaging follows by halves, that admits at most one RateWindow of the
// rise more: load_multiplier × rise × 100 ms tokens in all (36 flows when
// the load rises by 300/s at a multiplier of 1.2), once per lull.
//
// The price is paid by Poisson traffic below about 50 flows/s, where a
// silence of two intervals ends 13.5 % of windows and dropping them reads
// the rate high: the estimate's time average is within 3 % of the rate
// from 50 flows/s up, 17 % above it at 20/s and 25 % at 10/s (the
// estimator before lulls: 2, 8 and 19 %; TestIncomingRatePoisson).
//
// The zero value has no estimate (Rate is NaN). An IncomingRate is not
// safe for concurrent use: its owner guards it.
type IncomingRate struct {
	start    time.Time // of the current window; zero before the first flow
	last     time.Time // the previous flow's arrival
	tokens   float64   // arrived in the current window
	sumTok   float64   // smoothed tokens of the closed windows
	sumDur   float64   // smoothed length of the closed windows, seconds
	measured bool      // a window has closed
	fresh    bool      // the current window opened at a lull: its reading replaces
}

// Arrive counts a flow of tokens arriving at now. It reports whether a
// window closed or was dropped at now, so that the caller re-derives what
// depends on Rate. A time before the previous flow's counts as that time.
func (r *IncomingRate) Arrive(now time.Time, tokens float64) (changed bool) {
	if r.start.IsZero() {
		r.start, r.last, r.tokens = now, now, tokens
		return false
	}
	if now.Before(r.last) {
		now = r.last
	}
	silence := now.Sub(r.last)
	r.last = now
	if r.measured && !r.fresh && silence > r.lullAfter() {
		r.start, r.tokens, r.fresh = now, tokens, true
		return true
	}
	dt := now.Sub(r.start)
	if dt < RateWindow {
		r.tokens += tokens
		return false
	}
	if r.measured && !r.fresh {
		r.sumTok, r.sumDur = 0.5*r.sumTok+0.5*r.tokens, 0.5*r.sumDur+0.5*dt.Seconds()
	} else {
		r.sumTok, r.sumDur = r.tokens, dt.Seconds()
	}
	r.measured, r.fresh = true, false
	r.start, r.tokens = now, tokens
	return true
}

// Closes reports whether Arrive at now would close or drop a window (and
// so change Rate), without counting anything.
func (r *IncomingRate) Closes(now time.Time) bool {
	if r.start.IsZero() {
		return false
	}
	if now.Before(r.last) {
		now = r.last
	}
	if r.measured && !r.fresh && now.Sub(r.last) > r.lullAfter() {
		return true
	}
	return now.Sub(r.start) >= RateWindow
}

// Tokens is what arrived in the current window.
func (r *IncomingRate) Tokens() float64 { return r.tokens }

// Unarrive takes back tokens that Arrive counted in the current window,
// for a flow that is to arrive again. A window closed meanwhile keeps
// them: the next one is short of them instead.
func (r *IncomingRate) Unarrive(tokens float64) {
	r.tokens = max(r.tokens-tokens, 0)
}

// lullAfter is the silence that makes a lull at the current estimate.
func (r *IncomingRate) lullAfter() time.Duration {
	if r.sumTok <= 0 {
		return LullMin
	}
	s := LullIntervals * r.sumDur / r.sumTok
	if s >= time.Hour.Seconds() {
		return time.Hour
	}
	return max(LullMin, time.Duration(s*float64(time.Second)))
}

// Rate is the estimated incoming rate in tokens per second, NaN until the
// first window has closed.
func (r *IncomingRate) Rate() float64 {
	if !r.measured {
		return math.NaN()
	}
	return r.sumTok / r.sumDur
}
