package promql

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
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
	// ProbeInterval: when nothing has been heard from the server for this
	// long, Health probes it in the background. Default 10s.
	ProbeInterval time.Duration
}

// Remote queries a Prometheus-compatible HTTP API. It is safe for
// concurrent use.
type Remote struct {
	api      promv1.API
	timeout  time.Duration
	matchers []*labels.Matcher
	idle     interface{ CloseIdleConnections() } // nil with a caller's RoundTripper
	metrics  *queryMetrics

	// What the server last said, for Health.
	last       atomic.Pointer[contact]
	probeEvery time.Duration
	probing    atomic.Bool
	probeCtx   context.Context // ended by Close
	stopProbe  context.CancelFunc
	probes     sync.WaitGroup
}

// contact is the outcome of the last exchange with the server: err is
// nil when it answered as a Prometheus API does, even to refuse a query.
type contact struct {
	err error
	at  time.Time
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
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 10 * time.Second
	}
	r := &Remote{timeout: opts.Timeout, matchers: ms, probeEvery: opts.ProbeInterval}
	r.probeCtx, r.stopProbe = context.WithCancel(context.Background())
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
	if ctx.Err() == nil { // the caller's cancel says nothing of the server
		r.heard(err, qctx.Err())
	}
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

// heard records the outcome of an exchange with the server: err from the
// API client, timeout the local deadline's error if it passed.
func (r *Remote) heard(err, timeout error) {
	var apiErr *promv1.Error
	switch {
	case err == nil:
	case timeout != nil:
		err = fmt.Errorf("no answer within %v", r.timeout)
	case errors.As(err, &apiErr) && (apiErr.Type == promv1.ErrBadData || apiErr.Type == promv1.ErrExec ||
		apiErr.Type == promv1.ErrTimeout || apiErr.Type == promv1.ErrCanceled):
		err = nil // the server evaluated the query and refused it: it is up
	}
	r.last.Store(&contact{err: err, at: time.Now()})
}

// Health reports whether the server answered the last query or probe as
// a Prometheus API does: known is false before any exchange, and err
// says why the last one failed (unreachable, a timeout, an HTTP error
// that is not the API's). When nothing has been heard for
// ProbeInterval, it starts one probe in the background (the query
// "1"), so health follows the server even when no circuit queries it.
// It never blocks.
func (r *Remote) Health() (known bool, err error) {
	c := r.last.Load()
	if (c == nil || time.Since(c.at) > r.probeEvery) && r.probeCtx.Err() == nil && r.probing.CompareAndSwap(false, true) {
		r.probes.Add(1)
		go func() {
			defer r.probes.Done()
			defer r.probing.Store(false)
			_, _ = r.Query(r.probeCtx, "1", time.Time{})
		}()
	}
	if c == nil {
		return false, nil
	}
	return true, c.err
}

// Close releases idle connections. The Remote must not be used after.
func (r *Remote) Close() error {
	r.stopProbe()
	r.probes.Wait()
	if r.idle != nil {
		r.idle.CloseIdleConnections()
	}
	return nil
}
