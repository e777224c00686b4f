package otlpspans

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/fluxgate/fluxgate/metricnames"
)

// Options configures New.
type Options struct {
	// Endpoint is the agent's OTLP gRPC address (host:port, port 4317 by
	// default on an agent). Required.
	Endpoint string
	// Token is the agent's otlp.token, sent with every export as the
	// metadata authorization: Bearer <Token>, in plain text like the
	// spans unless TLS is set. Empty sends none, for an agent whose
	// receiver is open.
	Token string
	// TLS exports over TLS with this config, as client.RemoteOptions.TLS (a
	// client certificate for an agent with tls.client_ca_file). Nil means
	// plain text, which an agent with TLS refuses.
	TLS *tls.Config
	// QueueSize bounds the spans waiting for export; when it is full new
	// spans are dropped and counted. Default 4096.
	QueueSize int
	// BatchSize is the most spans per export. Default 512.
	BatchSize int
	// FlushInterval is the longest a span waits in the queue. Default 1s.
	FlushInterval time.Duration
	// ExportTimeout bounds one export. Default 5s.
	ExportTimeout time.Duration
	// Registerer receives fluxgate_client_spans_dropped_total and
	// fluxgate_client_spans_exported_total. Nil means none.
	Registerer prometheus.Registerer
	// Logger receives export failures. Nil means silent.
	Logger *slog.Logger
}

// Emitter exports the spans that client.Middleware records to an agent
// over OTLP, where they feed Flux Meters. It batches spans from a bounded
// queue: a slow or absent agent costs dropped spans, never blocked
// requests. It is safe for concurrent use.
type Emitter struct {
	tp       *sdktrace.TracerProvider
	proc     *queueProcessor
	exported prometheus.Counter
	dropped  prometheus.Counter
}

// New connects an OTLP exporter to opts.Endpoint. Close the Emitter to
// flush and stop.
func New(ctx context.Context, opts Options) (*Emitter, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("otlpspans: Options.Endpoint is required")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.ExportTimeout <= 0 {
		opts.ExportTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	expOpts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(opts.Endpoint), otlptracegrpc.WithInsecure()}
	if opts.TLS != nil {
		expOpts[1] = otlptracegrpc.WithTLSCredentials(credentials.NewTLS(opts.TLS))
	}
	if opts.Token != "" {
		expOpts = append(expOpts, otlptracegrpc.WithHeaders(map[string]string{"authorization": "Bearer " + opts.Token}))
	}
	exp, err := otlptracegrpc.New(ctx, expOpts...)
	if err != nil {
		return nil, fmt.Errorf("otlpspans: OTLP exporter: %w", err)
	}
	e := &Emitter{
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricnames.ClientSpansExportedTotal,
			Help: "Flow spans exported to the agent.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricnames.ClientSpansDroppedTotal,
			Help: "Flow spans dropped because the export queue was full or an export failed.",
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{e.exported, e.dropped} {
			if err := opts.Registerer.Register(c); err != nil {
				_ = exp.Shutdown(ctx)
				return nil, fmt.Errorf("otlpspans: register span metrics: %w", err)
			}
		}
	}
	e.proc = newQueueProcessor(exp, opts, e.exported, e.dropped)
	e.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.proc))
	return e, nil
}

// Tracer is the tracer to pass as client.MiddlewareOptions.Tracer (or
// gateway.Options.Tracer). Its instrumentation scope is the client
// package, whose middleware records the spans.
func (e *Emitter) Tracer() trace.Tracer {
	return e.tp.Tracer("github.com/fluxgate/fluxgate/controlpoint/client")
}

// Close exports what is queued (within ctx) and stops.
func (e *Emitter) Close(ctx context.Context) error { return e.tp.Shutdown(ctx) }

// queueProcessor is a span processor with a bounded queue and one export
// goroutine.
type queueProcessor struct {
	exp     sdktrace.SpanExporter
	opts    Options
	queue   chan sdktrace.ReadOnlySpan
	flush   chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	ok      prometheus.Counter
	dropped prometheus.Counter
}

func newQueueProcessor(exp sdktrace.SpanExporter, opts Options, ok, dropped prometheus.Counter) *queueProcessor {
	p := &queueProcessor{exp: exp, opts: opts, queue: make(chan sdktrace.ReadOnlySpan, opts.QueueSize),
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}), ok: ok, dropped: dropped}
	go p.run()
	return p
}

func (p *queueProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *queueProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	select {
	case p.queue <- s:
	default:
		p.dropped.Inc()
	}
}

func (p *queueProcessor) run() {
	defer close(p.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, p.opts.BatchSize)
	t := time.NewTicker(p.opts.FlushInterval)
	defer t.Stop()
	export := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.ExportTimeout)
		err := p.exp.ExportSpans(ctx, batch)
		cancel()
		if err != nil {
			p.dropped.Add(float64(len(batch)))
			p.opts.Logger.Warn("flow span export failed", "spans", len(batch), "err", err)
		} else {
			p.ok.Add(float64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	add := func(s sdktrace.ReadOnlySpan) {
		if batch = append(batch, s); len(batch) == p.opts.BatchSize {
			export()
		}
	}
	drain := func() {
		for {
			select {
			case s := <-p.queue:
				add(s)
			default:
				export()
				return
			}
		}
	}
	for {
		select {
		case s := <-p.queue:
			add(s)
		case <-t.C:
			export()
		case ack := <-p.flush:
			drain()
			close(ack)
		case <-p.stop:
			drain()
			return
		}
	}
}

func (p *queueProcessor) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flush <- ack:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *queueProcessor) Shutdown(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.exp.Shutdown(ctx)
}
