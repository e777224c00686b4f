package gateway

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/metricnames"
)

// metrics are the gateway's series of seed 000.
type metrics struct {
	requests    *prometheus.CounterVec   // route_id, upstream_host, method, status
	duration    *prometheus.HistogramVec // route_id, upstream_host, method
	inFlight    *prometheus.GaugeVec     // route_id, method
	connections *prometheus.GaugeVec     // upstream_host
	health      *prometheus.GaugeVec     // upstream, upstream_host
	weight      *prometheus.GaugeVec     // upstream, upstream_host
	handovers   *prometheus.CounterVec   // reason
	h2errors    *prometheus.CounterVec   // reason

	canaryWeight   *prometheus.GaugeVec     // route_id
	canaryVerdict  *prometheus.GaugeVec     // route_id, verdict
	canaryRequests *prometheus.CounterVec   // route_id, group, outcome
	canaryDuration *prometheus.HistogramVec // route_id, group
}

// durationBuckets run from 5 ms to 2 s.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.HTTPRequestsTotal,
			Help: "Requests the gateway answered, by route, upstream target, method and status.",
		}, []string{metricnames.LabelRouteID, metricnames.LabelUpstreamHost, metricnames.LabelMethod, "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricnames.HTTPRequestDurationSeconds,
			Help:    "Time from receiving a request to the end of its response.",
			Buckets: durationBuckets,
		}, []string{metricnames.LabelRouteID, metricnames.LabelUpstreamHost, metricnames.LabelMethod}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.HTTPRequestsInFlight,
			Help: "Requests the gateway is serving.",
		}, []string{metricnames.LabelRouteID, metricnames.LabelMethod}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.UpstreamActiveConnections,
			Help: "Open TCP connections from the gateway to the upstream target.",
		}, []string{metricnames.LabelUpstreamHost}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.UpstreamHealth,
			Help: "Whether the upstream target takes traffic: 1 healthy, 0 drained by health checks or outlier detection.",
		}, []string{"upstream", metricnames.LabelUpstreamHost}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.UpstreamWeight,
			Help: "Effective load-balancing weight of the upstream target.",
		}, []string{"upstream", metricnames.LabelUpstreamHost}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.GatewayHandoversTotal,
			Help: "Client connections the lean engine handed to another engine, by reason: to the fast engine request (outside its HTTP/1.1 subset), body (chunked or over 64 KiB), route (to an HTTP/2 group); to net/http h2 (a TLS connection that chose HTTP/2); from the loop engine to the lean one upstream_tls (a route to a group with upstream TLS).",
		}, []string{"reason"}),
		h2errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.GatewayHTTP2ProtocolErrorsTotal,
			Help: "Streams and connections the gateway's HTTP/2 server (gateway.http2.server lean) ended for a protocol error or a bound, by reason: bad_preface, protocol_error, flow_control, malformed_request, refused_stream, header_list_too_long, continuation_flood, rapid_reset, read_timeout, write_timeout, idle_timeout, handler_panic.",
		}, []string{"reason"}),
		canaryWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fluxgate_canary_weight",
			Help: "Percent of the route's traffic the canary gets by weight (0 while rolled back).",
		}, []string{metricnames.LabelRouteID}),
		canaryVerdict: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fluxgate_canary_verdict",
			Help: "The canary's current verdict on its metrics: 1 for the current one of pass, fail, no_data.",
		}, []string{metricnames.LabelRouteID, "verdict"}),
		canaryRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_canary_requests_total",
			Help: "Requests of a route with a canary that reached an upstream group, by group (primary, canary) and outcome (ok, error: 5xx or failed); what canary analysis reads.",
		}, []string{metricnames.LabelRouteID, "group", "outcome"}),
		canaryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fluxgate_canary_request_duration_seconds",
			Help:    "Latency of the requests counted in fluxgate_canary_requests_total, by group (primary, canary).",
			Buckets: durationBuckets,
		}, []string{metricnames.LabelRouteID, "group"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, r := range []string{metricnames.HandoverRequest, metricnames.HandoverBody, metricnames.HandoverRoute, metricnames.HandoverHTTP2, metricnames.HandoverH2C, metricnames.HandoverUpstreamTLS, metricnames.HandoverHTTP2Stream} {
		m.handovers.WithLabelValues(r) // every reason shows, at 0 until it happens
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.connections, m.health, m.weight, m.handovers, m.h2errors, m.canaryWeight, m.canaryVerdict, m.canaryRequests, m.canaryDuration} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

// reportUpstream exports the health and effective weight of u's targets.
func (m *metrics) reportUpstream(u *upstream, now time.Time) {
	for _, t := range u.targets {
		h := 0.0
		if t.available(now) {
			h = 1
		}
		m.health.WithLabelValues(u.name, t.addr).Set(h)
		m.weight.WithLabelValues(u.name, t.addr).Set(t.effectiveWeight())
	}
}

// forgetTarget deletes the series of a target that left group name.
func (m *metrics) forgetTarget(name, addr string) {
	m.health.DeleteLabelValues(name, addr)
	m.weight.DeleteLabelValues(name, addr)
}

// forgetRoute deletes the series of a route that went away.
func (m *metrics) forgetRoute(id string) {
	l := prometheus.Labels{metricnames.LabelRouteID: id}
	m.requests.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.inFlight.DeletePartialMatch(l)
}

// forgetCanary deletes the canary series of a route that lost its canary.
func (m *metrics) forgetCanary(route string) {
	m.canaryWeight.DeleteLabelValues(route)
	m.canaryVerdict.DeletePartialMatch(prometheus.Labels{metricnames.LabelRouteID: route})
	m.canaryRequests.DeletePartialMatch(prometheus.Labels{metricnames.LabelRouteID: route})
	m.canaryDuration.DeletePartialMatch(prometheus.Labels{metricnames.LabelRouteID: route})
}

// routeSeries holds one route's request series by method, upstream host
// and status once they were first used, so that a request does not look
// its three series up by label values each time. A route's series are
// deleted only when the route goes away, with this cache.
type routeSeries struct {
	m        *metrics
	id       string
	inFlight sync.Map // method label → prometheus.Gauge
	done     sync.Map // doneKey → doneSeries
}

type doneKey struct {
	host, method string
	status       int
}

type doneSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newRouteSeries(m *metrics, id string) *routeSeries { return &routeSeries{m: m, id: id} }

// started counts a request of method in flight and returns the gauge to
// decrement when it ends.
func (s *routeSeries) started(method string) prometheus.Gauge {
	method = methodLabel(method)
	g, ok := s.inFlight.Load(method)
	if !ok {
		g, _ = s.inFlight.LoadOrStore(method, s.m.inFlight.WithLabelValues(s.id, method))
	}
	gauge := g.(prometheus.Gauge)
	gauge.Inc()
	return gauge
}

// finished records a request answered with status after d, proxied to
// host ("" when it reached none).
func (s *routeSeries) finished(host, method string, status int, d time.Duration) {
	k := doneKey{host: host, method: methodLabel(method), status: status}
	v, ok := s.done.Load(k)
	if !ok {
		v, _ = s.done.LoadOrStore(k, doneSeries{
			requests: s.m.requests.WithLabelValues(s.id, k.host, k.method, statusLabel(status)),
			duration: s.m.duration.WithLabelValues(s.id, k.host, k.method),
		})
	}
	ds := v.(doneSeries)
	ds.requests.Inc()
	ds.duration.Observe(d.Seconds())
}

// methodLabel is the method as a label value: the standard methods as
// they are, any other as _OTHER, so clients cannot mint series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
