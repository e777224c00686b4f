// Package ui is the agent's live, read-only circuit view: a page served
// under /ui/ on the agent's HTTP port that lists the loaded policies,
// draws each policy's circuit as an SVG graph with the current value and
// validity of every signal, plots every signal over the last 15 minutes,
// and shows control points, flux meters and, when it runs, the gateway.
//
// The page is static: HTML, CSS, a small dependency-free script and a
// vendored copy of uPlot (assets/vendor, version in its README), embedded
// with go:embed, so nothing is built or fetched at run time. Everything it
// shows comes from JSON endpoints behind the admin token: the existing
// admin API (/v1/policies, /v1/controlpoints, /v1/gateway/upstreams) and
// the ones Register mounts:
//
//	GET /v1/ui/graph/{namespace}/{name}    the circuit as laid-out nodes and edges
//	GET /v1/ui/history/{namespace}/{name}  the signals' recent history (?since=unix ms)
//	GET /v1/ui/flows                       decision and flux meter counters
//	GET /v1/ui/trends/{view}               flux_meters or gateway over the last 15 minutes
//
// The history of flux meters (p50, p90, p99, flows/s) and of the gateway
// (per upstream target: requests/s, 5xx share, p99, effective weight; per
// breaker its state; per route its canary weight) comes from PromQL range
// queries (Options.Range: the agent's embedded TSDB, or the Prometheus
// server its circuits query), so a page opened now shows the past 15
// minutes. One answer is one range query on a grid of 3 s steps (300 in
// the window; ?since= asks only for the steps after it) plus one at now;
// it is bounded by TrendTimeout, MaxTrendSeries series and two answers
// computed at a time, and by the source's own limits.
//
// The access rule is the agent's (agent/auth.go): the JSON answers only
// requests with Authorization: Bearer <admin.token>. A browser cannot
// send that header on navigation, so the shell under /ui/ carries no data
// and is served without a token; the page asks for the token, keeps it in
// sessionStorage (gone when the tab closes, never in a URL or a cookie)
// and sends it on every JSON call. While admin.token is empty the admin
// endpoints are off, and so is the view: /ui/ answers 403.
//
// History is an in-memory ring per signal (History): one sample per
// second, 900 samples (15 minutes), at most MaxSignals signals in all.
// A UI is safe for concurrent use; Run owns the sampling goroutine.
package ui
