// Package promql evaluates the PromQL queries of circuit signals. It is
// the only package of FluxGate that calls into the Prometheus module
// (github.com/prometheus/prometheus), so that a Prometheus upgrade
// touches one place.
//
// Two sources implement circuit.QueryAPI:
//
//   - Embedded opens a Prometheus TSDB on local disk, appends the agent's
//     own registry to it every ScrapeInterval (as a Prometheus server
//     scraping the agent would, with job="fluxgate" and an instance label)
//     and evaluates queries with the Prometheus engine in process.
//   - Remote sends queries to a Prometheus-compatible HTTP API
//     (Prometheus, Thanos, Mimir), optionally adding label matchers to
//     every vector selector of every query.
//
// Both return one number per query: a scalar, or an instant vector with
// exactly one sample. Anything else (no sample, several, NaN or ±Inf, a
// range vector) is a *ResultError; an evaluation failure or a timeout is
// returned as is. Both are safe for concurrent use; the zero values are
// not usable, use NewEmbedded and NewRemote.
//
// Both also answer range queries (QueryRange) with every float series of
// the answer, for the live view's 15-minute history; those are bounded by
// the same timeout (and, embedded, MaxSamples) and are not counted among
// the circuits' queries.
//
// Check validates a query without evaluating it; the query.promql circuit
// component uses it at policy load.
package promql
