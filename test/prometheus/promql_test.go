package prometheus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/circuit/promql"
	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

// TestRemoteSourceAgainstPrometheus: a real Prometheus scrapes the agent,
// and promql.Remote, going through a TCP proxy the test can cut, reads
// back the number of flows the test sent. Injected label matchers select
// (or, wrong, hide) the series; with Prometheus unreachable or hanging
// the query fails within its timeout, and it answers again once
// Prometheus is back. The query.promql component on that source follows:
// valid, invalid with the reason, valid again.
func TestRemoteSourceAgainstPrometheus(t *testing.T) {
	a := startAgent(t, checkoutPolicy)
	prom := Start(t, time.Second, a.Addr(agent.ListenerMetrics).String())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := prom.WaitScraped(ctx, 1); err != nil {
		t.Fatal(err)
	}
	sendFlows(ctx, t, a, 7)

	proxy := startProxy(t, strings.TrimPrefix(prom.URL, "http://"))
	newRemote := func(timeout time.Duration, matchers ...string) *promql.Remote {
		r, err := promql.NewRemote(promql.RemoteOptions{Address: "http://" + proxy.addr, Timeout: timeout, Matchers: matchers})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	const q = `sum(flux_meter_count{flux_meter_name="checkout-latency"})`
	r := newRemote(2*time.Second, `job="fluxgate-agent"`)
	waitValue(ctx, t, r, q, 7)

	if _, err := newRemote(2*time.Second, `job="someone-else"`).Query(ctx, q, time.Time{}); !errors.Is(err, promql.ErrNoData) {
		t.Errorf("with job=\"someone-else\" injected: %v, want no data", err)
	}

	// The query.promql component on this source: a value, invalid with
	// the reason while Prometheus is down, a value again after.
	c := compilePromQL(t, q, r)
	defer c.Close()
	stepUntil(ctx, t, c, func(s circuit.Reading) bool { return s.Valid && s.Value == 7 })
	proxy.down()
	stepUntil(ctx, t, c, func(s circuit.Reading) bool { return !s.Valid && strings.Contains(s.Reason, "connection refused") })
	proxy.up(false)
	stepUntil(ctx, t, c, func(s circuit.Reading) bool { return s.Valid && s.Value == 7 })

	// Down: connections refused, the error comes at once: the refusal,
	// not the 2 s deadline's error, which Query returns once it passed.
	proxy.down()
	if _, err := r.Query(ctx, q, time.Time{}); err == nil || !strings.Contains(err.Error(), "connection refused") || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Prometheus down: %v, want connection refused", err)
	}
	// Hanging: the 2 s timeout is honoured. The proxy never answers, so
	// only the deadline ends the query, and not before it passed (the
	// deadline's exact value is checked in circuit/promql's
	// TestRemoteTimeout).
	proxy.up(true)
	start := time.Now()
	if _, err := r.Query(ctx, q, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Prometheus hanging: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("Prometheus hanging: the error came after %v, before the 2s timeout", d)
	}
	// Back: values again.
	proxy.up(false)
	waitValue(ctx, t, r, q, 7)
}

func compilePromQL(t *testing.T, q string, api circuit.QueryAPI) *circuit.Circuit {
	t.Helper()
	src := fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: remote}
spec:
  circuit:
    evaluation_interval: 100ms
    components:
      - query:
          promql:
            query_string: %q
            out_ports: {output: {signal_name: FLOWS}}
`, q)
	docs, err := policies.Parse("remote.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c, err := circuit.Compile(docs[0].Object.(*policies.Policy), circuit.Env{Query: api})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stepUntil steps c every 100 ms until its FLOWS reading satisfies ok.
func stepUntil(ctx context.Context, t *testing.T, c *circuit.Circuit, ok func(circuit.Reading) bool) {
	t.Helper()
	var last circuit.Reading
	for ctx.Err() == nil {
		c.Step(time.Now())
		for _, r := range c.Readings() {
			if r.Name == "FLOWS" {
				last = r
			}
		}
		if ok(last) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("FLOWS reading never as expected; last %+v", last)
}

func waitValue(ctx context.Context, t *testing.T, r *promql.Remote, q string, want float64) {
	t.Helper()
	var got float64
	var err error
	for ctx.Err() == nil {
		if got, err = r.Query(ctx, q, time.Time{}); err == nil && got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s = %v, %v; want %v", q, got, err, want)
}

// sendFlows sends n accepted /checkout spans of 20 ms to the agent.
func sendFlows(ctx context.Context, t *testing.T, a *agent.Agent, n int) {
	t.Helper()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(a.Addr(agent.ListenerOTLPGRPC).String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(50*time.Millisecond)))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("checkout-service")
	for i := 0; i < n; i++ {
		_, sp := tr.Start(ctx, "POST /checkout")
		sp.SetAttributes(
			attribute.String(fluxmeter.AttrControlPoint, "ingress"),
			attribute.String("http.target", "/checkout"),
			attribute.String(fluxmeter.AttrDecisionType, metricnames.DecisionAccepted),
			attribute.Int(fluxmeter.AttrHTTPStatus, 200),
			attribute.Float64(fluxmeter.AttrWorkloadMillis, 20),
		)
		sp.End()
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
}

// proxy forwards TCP connections on addr to a target; the test can take
// it down (connections refused) and bring it up again, forwarding or
// hanging (connections accepted, never answered).
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	l     net.Listener          // guarded by mu; nil while down
	conns map[net.Conn]struct{} // guarded by mu
	hang  bool                  // guarded by mu
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = struct{}{}
			hang := p.hang
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c, hang)
			}()
		}
	}()
}

func (p *proxy) forward(c net.Conn, hang bool) {
	defer p.drop(c)
	if hang {
		_, _ = io.Copy(io.Discard, c) // until the client gives up or down()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.drop(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
}

func (p *proxy) drop(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// down closes the listener and every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		_ = p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
}

// up listens again on the same address; hang makes new connections hang.
func (p *proxy) up(hang bool) {
	p.down()
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free
		if l, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.hang = hang
	p.mu.Unlock()
	p.serve(l)
}
