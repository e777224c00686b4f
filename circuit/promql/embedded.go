package promql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promengine "github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// EmbeddedOptions configures an Embedded source. Zero fields take the
// defaults documented on each.
type EmbeddedOptions struct {
	// Gatherer is the registry appended every ScrapeInterval. Required.
	Gatherer prometheus.Gatherer
	// Dir holds the TSDB. Empty: a temporary directory created by
	// NewEmbedded and removed by Close (the write-ahead log is then off,
	// since nothing survives a restart anyway).
	Dir string
	// ScrapeInterval between appends of Gatherer. Default 1s.
	ScrapeInterval time.Duration
	// Retention of samples. Default 2h.
	Retention time.Duration
	// Job is the job label of every series. Default "fluxgate".
	Job string
	// Instance is the instance label of every series; empty leaves it out.
	Instance string
	// QueryTimeout bounds one query's evaluation. Default 10s.
	QueryTimeout time.Duration
	// MaxSamples bounds the samples one query may load. Default 5,000,000.
	MaxSamples int
	// LookbackDelta is how far back an instant selector looks. Default 5m.
	LookbackDelta time.Duration
	// Registerer receives fluxgate_tsdb_appends_total,
	// fluxgate_tsdb_append_errors_total, fluxgate_tsdb_head_series and the
	// fluxgate_promql_query_* metrics. The TSDB's and the engine's own
	// (prometheus_*) metrics are never registered. Nil: none.
	Registerer prometheus.Registerer
	// Logger; nil means silent.
	Logger *slog.Logger
}

// Embedded is a Prometheus TSDB filled from the agent's own registry,
// queried with the Prometheus engine in process. Run owns the scrape loop;
// ScrapeAt appends one scrape at a given time. Query, ScrapeAt and Close
// are safe for concurrent use.
type Embedded struct {
	opts    EmbeddedOptions
	tempDir string // removed by Close; "" when Dir was given
	db      *tsdb.DB
	engine  *promengine.Engine
	logger  *slog.Logger

	appends      prometheus.Counter
	appendErrors prometheus.Counter
	metrics      *queryMetrics

	scrapeMu sync.Mutex       // serializes scrapes
	series   map[string]entry // guarded by scrapeMu: series of the last scrape
	buf      []byte           // guarded by scrapeMu

	closeOnce sync.Once
	closeErr  error
}

type entry struct {
	ref    storage.SeriesRef
	labels labels.Labels
}

// NewEmbedded opens the TSDB. Close releases it.
func NewEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("promql: EmbeddedOptions.Gatherer is required")
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = 2 * time.Hour
	}
	if opts.Job == "" {
		opts.Job = "fluxgate"
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 10 * time.Second
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = 5_000_000
	}
	if opts.LookbackDelta <= 0 {
		opts.LookbackDelta = 5 * time.Minute
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Embedded{opts: opts, logger: logger, series: map[string]entry{}}

	dbOpts := tsdb.DefaultOptions()
	dbOpts.RetentionDuration = opts.Retention.Milliseconds()
	dbOpts.NoLockfile = true
	// Blocks no longer than the retention, so that old data leaves memory
	// and disk in about one retention period.
	if block := opts.Retention.Milliseconds(); block < dbOpts.MinBlockDuration {
		dbOpts.MinBlockDuration, dbOpts.MaxBlockDuration = block, block
	}
	dir := opts.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fluxgate-tsdb-")
		if err != nil {
			return nil, fmt.Errorf("promql: TSDB directory: %w", err)
		}
		dir, e.tempDir = tmp, tmp
		dbOpts.WALSegmentSize = -1
	}
	db, err := tsdb.Open(dir, logger, nil, dbOpts, nil)
	if err != nil {
		_ = e.removeTemp() // best effort: the open error is the one to report
		return nil, fmt.Errorf("promql: open TSDB in %s: %w", dir, err)
	}
	e.db = db
	e.engine = promengine.NewEngine(promengine.EngineOpts{
		Logger:               logger,
		MaxSamples:           opts.MaxSamples,
		Timeout:              opts.QueryTimeout,
		LookbackDelta:        opts.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return opts.ScrapeInterval.Milliseconds()
		},
	})
	if err := e.register(opts.Registerer); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Embedded) register(reg prometheus.Registerer) error {
	e.appends = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fluxgate_tsdb_appends_total",
		Help: "Samples appended to the embedded TSDB, staleness markers included.",
	})
	e.appendErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fluxgate_tsdb_append_errors_total",
		Help: "Samples the embedded TSDB refused (out of order, duplicate timestamp, ...).",
	})
	headSeries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fluxgate_tsdb_head_series",
		Help: "Series in the embedded TSDB's head block.",
	}, func() float64 { return float64(e.db.Head().NumSeries()) })
	m, err := newQueryMetrics(reg)
	if err != nil {
		return err
	}
	e.metrics = m
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{e.appends, e.appendErrors, headSeries} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("promql: register metrics: %w", err)
		}
	}
	return nil
}

// Run appends a scrape now and then every ScrapeInterval until ctx is
// done. A failed scrape is logged and the loop goes on.
func (e *Embedded) Run(ctx context.Context) error {
	t := time.NewTicker(e.opts.ScrapeInterval)
	defer t.Stop()
	now := time.Now()
	for {
		if err := e.ScrapeAt(now); err != nil {
			e.logger.Warn("embedded TSDB scrape", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case now = <-t.C:
		}
	}
}

// ScrapeAt gathers the registry and appends every sample at time at, with
// a staleness marker for each series the previous scrape had and this one
// has not. Samples the TSDB refuses (at not after the previous scrape, say)
// are counted and reported in the error; the others are kept.
func (e *Embedded) ScrapeAt(at time.Time) error {
	mfs, gatherErr := e.opts.Gatherer.Gather()
	if len(mfs) == 0 && gatherErr != nil {
		return fmt.Errorf("promql: gather: %w", gatherErr)
	}
	e.scrapeMu.Lock()
	defer e.scrapeMu.Unlock()
	ts := at.UnixMilli()
	app := e.db.AppenderV2(context.Background())
	s := scrape{e: e, app: app, ts: ts, seen: make(map[string]bool, len(e.series))}
	s.families(mfs)
	s.sample("up", nil, 1)
	for key, ent := range e.series {
		if s.seen[key] {
			continue
		}
		delete(e.series, key)
		if _, err := app.Append(ent.ref, ent.labels, 0, ts, math.Float64frombits(value.StaleNaN), nil, nil, storage.AOptions{}); err != nil {
			s.fail(err)
			continue
		}
		s.appended++
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("promql: TSDB commit: %w", err)
	}
	e.appends.Add(float64(s.appended))
	e.appendErrors.Add(float64(s.failed))
	var errs []error
	if gatherErr != nil {
		errs = append(errs, fmt.Errorf("promql: gather: %w", gatherErr))
	}
	if s.failed > 0 {
		errs = append(errs, fmt.Errorf("promql: TSDB refused %d of %d samples at %s: %w", s.failed, s.failed+s.appended, at.Format(time.RFC3339Nano), s.firstErr))
	}
	return errors.Join(errs...)
}

// scrape is one ScrapeAt in progress.
type scrape struct {
	e        *Embedded
	app      storage.AppenderV2
	ts       int64
	seen     map[string]bool
	lb       labels.ScratchBuilder
	appended int
	failed   int
	firstErr error
}

func (s *scrape) fail(err error) {
	if s.failed == 0 {
		s.firstErr = err
	}
	s.failed++
}

func (s *scrape) families(mfs []*dto.MetricFamily) {
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				s.sample(name, m.GetLabel(), m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				s.sample(name, m.GetLabel(), m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				s.sample(name, m.GetLabel(), m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				for _, q := range sm.GetQuantile() {
					s.sample(name, m.GetLabel(), q.GetValue(), "quantile", labels.FormatOpenMetricsFloat(q.GetQuantile()))
				}
				s.sample(name+"_sum", m.GetLabel(), sm.GetSampleSum())
				s.sample(name+"_count", m.GetLabel(), float64(sm.GetSampleCount()))
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				sum, count := "_sum", "_count"
				if mf.GetType() == dto.MetricType_GAUGE_HISTOGRAM {
					sum, count = "_gsum", "_gcount"
				}
				inf := false
				for _, b := range h.GetBucket() {
					cnt := float64(b.GetCumulativeCount())
					if b.CumulativeCountFloat != nil {
						cnt = b.GetCumulativeCountFloat()
					}
					inf = inf || math.IsInf(b.GetUpperBound(), +1)
					s.sample(name+"_bucket", m.GetLabel(), cnt, "le", labels.FormatOpenMetricsFloat(b.GetUpperBound()))
				}
				cnt := float64(h.GetSampleCount())
				if h.SampleCountFloat != nil {
					cnt = h.GetSampleCountFloat()
				}
				if !inf {
					s.sample(name+"_bucket", m.GetLabel(), cnt, "le", "+Inf")
				}
				s.sample(name+sum, m.GetLabel(), h.GetSampleSum())
				s.sample(name+count, m.GetLabel(), cnt)
			}
		}
	}
}

// sample appends one float sample of series name{pairs, extra...,
// job, instance}.
func (s *scrape) sample(name string, pairs []*dto.LabelPair, v float64, extra ...string) {
	e := s.e
	s.lb.Reset()
	s.lb.Add(model.MetricNameLabel, name)
	for _, p := range pairs {
		if p.GetName() == "job" || p.GetName() == "instance" {
			// As Prometheus does without honor_labels: the target's win.
			s.lb.Add("exported_"+p.GetName(), p.GetValue())
			continue
		}
		s.lb.Add(p.GetName(), p.GetValue())
	}
	for i := 0; i+1 < len(extra); i += 2 {
		s.lb.Add(extra[i], extra[i+1])
	}
	s.lb.Add("job", e.opts.Job)
	if e.opts.Instance != "" {
		s.lb.Add("instance", e.opts.Instance)
	}
	s.lb.Sort()
	ls := s.lb.Labels()

	e.buf = ls.Bytes(e.buf[:0])
	ent, known := e.series[string(e.buf)]
	key := string(e.buf)
	if s.seen[key] {
		return // a duplicate series in one gather: keep the first
	}
	s.seen[key] = true
	if !known {
		ent.labels = ls
	}
	ref, err := s.app.Append(ent.ref, ent.labels, 0, s.ts, v, nil, nil, storage.AOptions{})
	if err != nil {
		s.fail(err)
		if known {
			return
		}
		ref = 0
	}
	if err == nil {
		s.appended++
	}
	if !known || ref != ent.ref {
		ent.ref = ref
		e.series[key] = ent
	}
}

// Query evaluates q at time at (now when zero) and returns its single
// number; see the package documentation for the result rules.
func (e *Embedded) Query(ctx context.Context, q string, at time.Time) (v float64, err error) {
	start := time.Now()
	defer func() { e.metrics.observe(ctx, "embedded", start, err) }()
	if at.IsZero() {
		at = start
	}
	qry, err := e.engine.NewInstantQuery(ctx, e.db, nil, q, at)
	if err != nil {
		return 0, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var te promengine.ErrQueryTimeout
		if errors.As(res.Err, &te) {
			return 0, fmt.Errorf("%s: %w", strings.TrimSpace(te.Error()), context.DeadlineExceeded)
		}
		return 0, res.Err
	}
	switch r := res.Value.(type) {
	case promengine.Scalar:
		return finite(r.V)
	case promengine.Vector:
		switch {
		case len(r) == 0:
			return 0, ErrNoData
		case len(r) > 1:
			return 0, manySeries(len(r))
		case r[0].H != nil:
			return 0, wrongType("a native histogram")
		}
		return finite(r[0].F)
	case promengine.Matrix:
		return 0, wrongType("a range vector")
	default:
		return 0, wrongType(string(res.Value.Type()))
	}
}

// Close closes the TSDB and the engine, and removes the temporary
// directory if NewEmbedded created one. It is idempotent.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		if e.engine != nil {
			errs = append(errs, e.engine.Close())
		}
		if e.db != nil {
			errs = append(errs, e.db.Close())
		}
		errs = append(errs, e.removeTemp())
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

func (e *Embedded) removeTemp() error {
	if e.tempDir == "" {
		return nil
	}
	return os.RemoveAll(e.tempDir)
}
