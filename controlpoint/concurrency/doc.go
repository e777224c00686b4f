// Package concurrency is the adaptive concurrency limiter behind the
// flow_control.adaptive_concurrency component: the fast, in-path loop of
// service protection.
//
// A Limiter bounds the flows in flight to a service. It learns the limit
// from the flows themselves, as each one ends (Release), without waiting
// for a scrape or a circuit tick:
//
//   - The no-load latency is the median of the last 8 flows that were
//     admitted while few others were in flight (at most a third of the
//     limit, which settles near 1.5 × the service's own parallelism):
//     flows that found the service idle. While the limit binds and no
//     such flow has been seen for ProbeInterval, the limiter probes: it
//     admits only that third until 4 of them have ended (at most 2 s).
//   - The target latency is the no-load latency × Tolerance, or the
//     objective a circuit sets (SetObjective).
//   - Completions are grouped in windows of at least 8 flows and one
//     no-load latency (at most a second). When a window's mean latency is
//     above the target, the limit is scaled by target/mean, by at most a
//     quarter per window. When it is below the target and the limit bound
//     during the window, the limit grows by a quarter of the relative
//     slack (at least one flow). When the limit did not bind, it is kept
//     within reach of the concurrency actually used (twice the peak, or
//     the peak plus 4): a limit that is never reached says nothing about
//     the service, and an unused high limit would let the next overload's
//     onset burst straight through (Netflix concurrency-limits #134).
//
// This is a gradient estimator in the family of Netflix's Gradient2 and
// Envoy's adaptive concurrency filter, anchored on a no-load latency
// measured at low concurrency rather than on a long-term average (which
// drifts up under sustained load and lets the limit run away), and
// Vegas-like in growing only while the limit is what holds flows back.
// Little's law makes the limit a rate limit that follows the service: at
// L flows in flight and mean latency R, the service completes L/R flows
// a second, so a limit slightly above the service's own parallelism keeps
// it busy while holding the queue in front of it short.
//
// Flows beyond the limit wait in a weighted fair queue (finish tags per
// workload, weight = share) for at most their queue delay: by default the
// no-load latency (within 1 ms..1 s; 50 ms until it is known), so a
// request admitted after waiting is still fast, and one that cannot be
// served soon is turned away at once instead of after seconds. The
// heaviest workload seen waits the whole delay, lighter ones down to half
// of it (in proportion to their weight): under overload the light flows
// that would wait longest are turned away first, which keeps the latency
// of what is admitted low while heavy workloads keep their share.
//
// Time is a parameter of Release and TryAcquire; Acquire waits in real
// time and reads the Options.Clock. A Limiter is safe for concurrent use.
package concurrency
