// Package breaker is a circuit breaker for outbound calls: the gateway
// puts one in front of each upstream group, the Go SDK one in front of the
// agent, the Redis backend one in front of Redis, and applications wrap
// their own calls to a dependency with it.
//
// A Breaker starts Closed and counts the outcome of every call over a
// sliding Window. When at least MinRequests calls in the window finished
// and more than ErrorRate of them failed, it opens: for OpenFor every call
// is refused with an *OpenError (errors.Is(err, ErrOpen)). Then it is
// HalfOpen: it admits at most HalfOpenProbes calls at a time; when that
// many succeed it closes, and the first failure opens it again. The only
// transitions are closed → open, open → half_open, half_open → closed and
// half_open → open.
//
// With ConsecutiveFailures set, a closed breaker trips instead after that
// many failures in a row, a success starting the count again, as the Go
// SDK's Guard (in front of the agent) and the Redis backend of global rate
// limiters use it with one probe. While such a breaker is closed and has
// counted no failure, AllowAt and a success read two atomics and take no
// lock, so a healthy dependency costs the hot path next to nothing.
//
// Time is a parameter: AllowAt(now) admits a call and returns a Permit,
// DoneAt(now, permit, err) or RecordAt(now, permit, outcome) ends it. Do
// wraps a function with the wall clock. A Breaker is safe for concurrent
// use; there is no zero value, use New.
//
// Listeners hear every transition with a reason that carries the value
// that caused it. PrometheusListener exports circuit_breaker_state,
// circuit_breaker_state_transition_total and fluxgate_circuit_breaker_state
// on a Registerer of your choice, and Close deletes its series.
package breaker
