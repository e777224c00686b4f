package certs

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/metricnames"
)

// metrics are the TLS series of every Reloader on one Registerer: the
// agent and the built-in gateway share the registry of `fluxgate
// gateway`, so each Reloader writes its own label values (server for the
// certificate, listener for handshakes) into collectors registered once.
type metrics struct {
	expiry    *prometheus.GaugeVec     // server, server_name
	reloads   *prometheus.CounterVec   // server, result
	handshake *prometheus.HistogramVec // listener
	failed    *prometheus.CounterVec   // listener
}

// handshakeBuckets run from 0.5 ms to 1 s.
var handshakeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// newMetrics builds the collectors and registers them on reg, or takes
// the ones already registered there.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fluxgate_tls_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the certificate a server (agent, gateway) serves, as a Unix timestamp, by its server name.",
		}, []string{"server", "server_name"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_tls_certificate_reloads_total",
			Help: "Changes of a server's certificate, key or client CA files, by result: success, or failure when the new files were refused and the previous ones kept.",
		}, []string{"server", "result"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricnames.TLSHandshakeDurationSeconds,
			Help:    "Time from accepting a TCP connection to the end of its TLS handshake, for successful handshakes, by listener.",
			Buckets: handshakeBuckets,
		}, []string{"listener"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_tls_handshake_errors_total",
			Help: "TLS handshakes that failed or timed out (a plain-text client, an unknown or missing client certificate, a client that never finished), by listener.",
		}, []string{"listener"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	var err error
	m.expiry, err = registerOnce(reg, m.expiry)
	errs = append(errs, err)
	m.reloads, err = registerOnce(reg, m.reloads)
	errs = append(errs, err)
	m.handshake, err = registerOnce(reg, m.handshake)
	errs = append(errs, err)
	m.failed, err = registerOnce(reg, m.failed)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("certs: register metrics: %w", err)
	}
	return m, nil
}

// registerOnce registers c, or returns the equal collector already
// registered.
func registerOnce[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
