package promql

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// RemoteOptions configures a Remote source.
type RemoteOptions struct {
	// Address of the Prometheus-compatible HTTP API, such as
	// http://prometheus:9090 (the /api/v1/query path is added). Required.
	Address string
	// Timeout of one query, sent to the server as its timeout parameter
	// and enforced locally. Default 5s.
	Timeout time.Duration
	// Matchers are added to every vector selector of every query, such as
	// `cluster="east"` or `env=~"prod|staging"`. They narrow a query; a
	// query cannot widen them.
	Matchers []string
	// RoundTripper; nil means a private clone of http.DefaultTransport.
	RoundTripper http.RoundTripper
	// Registerer receives the fluxgate_promql_query_* metrics. Nil: none.
	Registerer prometheus.Registerer
}

// Remote queries a Prometheus-compatible HTTP API. It is safe for
// concurrent use.
type Remote struct {
	api      promv1.API
	timeout  time.Duration
	matchers []*labels.Matcher
	idle     interface{ CloseIdleConnections() } // nil with a caller's RoundTripper
	metrics  *queryMetrics
}

// NewRemote checks opts and returns a Remote; it does not contact the
// server.
func NewRemote(opts RemoteOptions) (*Remote, error) {
	if opts.Address == "" {
		return nil, errors.New("promql: RemoteOptions.Address is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	ms, err := ParseMatchers(opts.Matchers)
	if err != nil {
		return nil, err
	}
	r := &Remote{timeout: opts.Timeout, matchers: ms}
	rt := opts.RoundTripper
	if rt == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		rt, r.idle = tr, tr
	}
	client, err := api.NewClient(api.Config{Address: opts.Address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("promql: prometheus.address %q: %w", opts.Address, err)
	}
	r.api = promv1.NewAPI(client)
	if r.metrics, err = newQueryMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return r, nil
}

// Query evaluates q (with the configured matchers added) at time at (now
// when zero) and returns its single number; see the package documentation
// for the result rules. A query that takes longer than the timeout returns
// context.DeadlineExceeded.
func (r *Remote) Query(ctx context.Context, q string, at time.Time) (v float64, err error) {
	start := time.Now()
	defer func() { r.metrics.observe(ctx, "remote", start, err) }()
	if at.IsZero() {
		at = start
	}
	if q, err = InjectMatchers(q, r.matchers); err != nil {
		return 0, err
	}
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	val, _, _, err := r.api.Query(qctx, q, at, promv1.WithTimeout(r.timeout))
	if err != nil {
		if qctx.Err() != nil {
			return 0, qctx.Err()
		}
		return 0, err
	}
	switch val := val.(type) {
	case *model.Scalar:
		return finite(float64(val.Value))
	case model.Vector:
		switch {
		case len(val) == 0:
			return 0, ErrNoData
		case len(val) > 1:
			return 0, manySeries(len(val))
		case val[0].Histogram != nil:
			return 0, wrongType("a native histogram")
		}
		return finite(float64(val[0].Value))
	case model.Matrix:
		return 0, wrongType("a range vector")
	case nil:
		return 0, ErrNoData
	default:
		return 0, wrongType(val.Type().String())
	}
}

// Close releases idle connections. The Remote must not be used after.
func (r *Remote) Close() error {
	if r.idle != nil {
		r.idle.CloseIdleConnections()
	}
	return nil
}
