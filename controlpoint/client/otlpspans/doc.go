// Package otlpspans sends the Go SDK's flow spans to an agent over OTLP
// gRPC, where they feed Flux Meters.
//
// It is apart from package client so that the SDK's core links only gRPC,
// the protos, the OpenTelemetry API and client_golang: the OpenTelemetry
// SDK and the OTLP exporter that this package brings (about 40 packages)
// are linked only by an application that imports it.
//
// # Model
//
// An Emitter owns an OpenTelemetry tracer provider whose one span processor
// keeps ended spans in a bounded queue (Options.QueueSize) and exports them
// from one goroutine in batches (Options.BatchSize, at least every
// Options.FlushInterval, each export bounded by Options.ExportTimeout). A
// span that finds the queue full, or whose export fails, is dropped and
// counted in fluxgate_client_spans_dropped_total; ending a span never
// waits for the agent. Exported spans are counted in
// fluxgate_client_spans_exported_total.
//
// Pass Emitter.Tracer to client.MiddlewareOptions.Tracer (or
// gateway.Options.Tracer): the middleware records one span per checked
// request with the attributes of client.FlowSpan. Close flushes the queue
// and stops the exporter.
//
//	spans, err := otlpspans.New(ctx, otlpspans.Options{Endpoint: "agent:4317"})
//	if err != nil { … }
//	defer spans.Close(ctx)
//	h := client.Middleware(guard, client.MiddlewareOptions{Tracer: spans.Tracer()})(next)
//
// An Emitter is safe for concurrent use.
package otlpspans
