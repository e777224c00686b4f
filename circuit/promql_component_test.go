package circuit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fluxgate/fluxgate/circuit/promql"
	"github.com/fluxgate/fluxgate/policies"
)

// Both sources are QueryAPIs.
var (
	_ QueryAPI = (*promql.Embedded)(nil)
	_ QueryAPI = (*promql.Remote)(nil)
)

// fakeQuery is a QueryAPI whose answer the test sets: a value, an error,
// or a hang until the query's context ends.
type fakeQuery struct {
	mu      sync.Mutex
	v       float64
	err     error
	hang    bool
	calls   []call
	active  int
	ctxErrs []error // context errors of the hung queries, as they ended
}

type call struct {
	q  string
	at time.Time
}

func (f *fakeQuery) Query(ctx context.Context, q string, at time.Time) (float64, error) {
	f.mu.Lock()
	f.calls = append(f.calls, call{q, at})
	hang, v, err := f.hang, f.v, f.err
	f.active++
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.active--; f.mu.Unlock() }()
	if hang {
		<-ctx.Done()
		f.mu.Lock()
		f.ctxErrs = append(f.ctxErrs, ctx.Err())
		f.mu.Unlock()
		return 0, ctx.Err()
	}
	return v, err
}

func (f *fakeQuery) set(v float64, err error, hang bool) {
	f.mu.Lock()
	f.v, f.err, f.hang = v, err, hang
	f.mu.Unlock()
}

func (f *fakeQuery) snapshot() (calls []call, active int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...), f.active
}

func buildPromQL(t *testing.T, spec *PromQL, interval time.Duration, api QueryAPI) *promqlQuery {
	t.Helper()
	if errs := spec.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := spec.Build(&Env{Interval: interval, Query: api, Policy: policies.Key{Name: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	q := c.(*promqlQuery)
	t.Cleanup(q.Close)
	return q
}

// stepFor steps c at now, and then again at the same time, until the
// output satisfies ok or 5 s pass; it returns the last output.
func stepFor(t *testing.T, c Component, now time.Time, ok func(Signal) bool) Signal {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := []Signal{{}}
		c.Step(Tick{Now: now, Interval: time.Second}, nil, out)
		if ok(out[0]) || time.Now().After(deadline) {
			return out[0]
		}
		time.Sleep(time.Millisecond)
	}
}

func isValid(s Signal) bool { return s.Valid }

func TestPromQLQueryMustParse(t *testing.T) {
	src := "apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: c}\nspec:\n  circuit:\n    components:\n" + indent(`
- query:
    promql:
      query_string: sum(rate(x[1m])
      out_ports: {output: {signal_name: A}}
- query:
    promql:
      query_string: x[5m]
      out_ports: {output: {signal_name: B}}
- query:
    promql:
      query_string: up
      evaluation_interval: 5ms
      out_ports: {output: {signal_name: C}}
- query:
    promql: {out_ports: {output: {signal_name: D}}}
`, "      ")
	_, err := policies.Parse("c.yaml", []byte(src))
	if err == nil {
		t.Fatal("bad queries were accepted")
	}
	for _, want := range []string{
		"c.yaml:7:9: query.promql: query_string: 1:16: parse error: unclosed left parenthesis",
		"c.yaml:11:9: query.promql: query_string: expression is a range vector; want a scalar or an instant vector",
		"c.yaml:15:9: query.promql: evaluation_interval must be at least 10ms",
		"c.yaml:20:9: query.promql: query_string is required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// Through a compiled circuit: the query runs every evaluation_interval
// (3 s on a 1 s circuit) for the tick that asked, its value feeds the
// next components, and a failure is invalid with the error as reason.
func TestPromQLInCircuit(t *testing.T) {
	f := &fakeQuery{v: 21}
	p := parseCircuit(t, `
- query:
    promql:
      query_string: sum(rate(flux_meter_count{flux_meter_name="lat"}[10s]))
      evaluation_interval: 3s
      out_ports: {output: {signal_name: RPS}}
- arithmetic_combinator:
    operator: mul
    in_ports: {lhs: {signal_name: RPS}, rhs: {constant_signal: {value: 2}}}
    out_ports: {output: {signal_name: LIMIT}}
`)
	c, err := Compile(p, Env{Query: f})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := c.producer[0].comp.(*promqlQuery)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	c.Step(at(0))
	// The fake answers at once, so Step usually gets it within
	// PromQLSameTickWait and the value feeds tick 0; on a loaded machine it
	// may come later, and then the output says it is waiting.
	if v := value(t, c, "RPS"); v.Valid && v != Value(21) {
		t.Fatalf("RPS = %v at tick 0", v)
	} else if !v.Valid {
		if r := reading(t, c, "RPS"); r.Reason != "waiting for the first query result" {
			t.Errorf("reason %q", r.Reason)
		}
		t.Log("the first result missed the same tick")
	}
	waitIdle(t, q, f, 1)
	for i := 1; i <= 6; i++ {
		c.Step(at(i))
		if i == 3 || i == 6 {
			waitIdle(t, q, f, 1+i/3)
		}
		if v := value(t, c, "LIMIT"); v != Value(42) {
			t.Fatalf("tick %d: LIMIT = %v, want 42", i, v)
		}
	}
	calls, _ := f.snapshot()
	for i, want := range []time.Time{at(0), at(3), at(6)} {
		if !calls[i].at.Equal(want) || calls[i].q != `sum(rate(flux_meter_count{flux_meter_name="lat"}[10s]))` {
			t.Errorf("call %d = %+v, want the query at %v", i, calls[i], want)
		}
	}
	f.set(0, promql.ErrNoData, false)
	c.Step(at(9))
	waitIdle(t, q, f, 4)
	c.Step(at(10))
	if r := reading(t, c, "RPS"); r.Valid || r.Reason != "query returned no data" {
		t.Errorf("RPS = %+v, want invalid: query returned no data", r)
	}
	if v := value(t, c, "LIMIT"); v.Valid {
		t.Errorf("LIMIT = %v from an invalid RPS", v)
	}
}

func reading(t *testing.T, c *Circuit, name string) Reading {
	t.Helper()
	for _, r := range c.Readings() {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no reading %q", name)
	return Reading{}
}

// waitIdle waits until q's worker has stored the result of its query,
// and checks that f has answered n queries in all.
func waitIdle(t *testing.T, q *promqlQuery, f *fakeQuery, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		inflight := q.inflight
		q.mu.Unlock()
		if !inflight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("query still running after 5s")
		}
		time.Sleep(time.Millisecond)
	}
	if calls, _ := f.snapshot(); len(calls) != n {
		t.Fatalf("%d queries, want %d", len(calls), n)
	}
}

// A source that hangs never blocks Step: the output is invalid with a
// reason at once, the query is abandoned after 2×interval + one tick, and
// values come back when the source does.
func TestPromQLNeverBlocks(t *testing.T) {
	f := &fakeQuery{hang: true}
	c := buildPromQL(t, &PromQL{QueryString: "up", EvaluationInterval: 100 * time.Millisecond}, 100*time.Millisecond, f)
	start := time.Now()
	var out Signal
	for i := 0; time.Since(start) < 600*time.Millisecond; i++ {
		now := time.Now()
		o := []Signal{{}}
		// Step returns while the source hangs: were it to wait for the
		// query, it would never return (a generous bound, not a timing).
		stepped := make(chan struct{})
		go func() {
			c.Step(Tick{Now: now, Interval: 100 * time.Millisecond, N: uint64(i)}, nil, o)
			close(stepped)
		}()
		select {
		case <-stepped:
		case <-time.After(5 * time.Second):
			t.Fatalf("Step %d blocked on a hanging source", i)
		}
		out = o[0]
		if out.Valid {
			t.Fatalf("valid output %v from a hanging source", out)
		}
		if i == 0 && c.Reason() != "waiting for the first query result" {
			t.Errorf("first reason %q", c.Reason())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// maxAge = 2×100ms + 100ms: the first query was abandoned at ~300 ms.
	f.mu.Lock()
	ctxErrs := append([]error(nil), f.ctxErrs...)
	f.mu.Unlock()
	if len(ctxErrs) == 0 || !errors.Is(ctxErrs[0], context.DeadlineExceeded) {
		t.Fatalf("hung queries ended with %v, want a deadline", ctxErrs)
	}
	if r := c.Reason(); r != "context deadline exceeded" {
		t.Errorf("reason %q, want context deadline exceeded", r)
	}
	// Recovery.
	f.set(7, nil, false)
	got := Invalid
	for deadline := time.Now().Add(5 * time.Second); !got.Valid && time.Now().Before(deadline); {
		o := []Signal{{}}
		c.Step(Tick{Now: time.Now(), Interval: 100 * time.Millisecond}, nil, o)
		got = o[0]
		time.Sleep(10 * time.Millisecond)
	}
	if got != Value(7) || c.Reason() != "" {
		t.Errorf("after recovery: %v, reason %q; want 7", got, c.Reason())
	}
}

// A good result goes stale when no newer one arrives within 2×interval
// plus one tick.
func TestPromQLStaleResult(t *testing.T) {
	f := &fakeQuery{v: 5}
	c := buildPromQL(t, &PromQL{QueryString: "up", EvaluationInterval: time.Second}, time.Second, f)
	if got := stepFor(t, c, t0, isValid); got != Value(5) {
		t.Fatalf("output %v, want 5", got)
	}
	f.set(0, nil, true) // later queries hang until abandoned
	step := func(now time.Time) Signal {
		o := []Signal{{}}
		c.Step(Tick{Now: now, Interval: time.Second}, nil, o)
		return o[0]
	}
	if got := step(t0.Add(time.Second)); got != Value(5) {
		t.Errorf("1s later: %v, want 5 still", got)
	}
	if got := step(t0.Add(3 * time.Second)); got != Value(5) {
		t.Errorf("3s later: %v, want 5 still (limit 3s)", got)
	}
	got := step(t0.Add(3*time.Second + time.Millisecond))
	if got.Valid {
		t.Errorf("3.001s later: %v, want invalid", got)
	}
	if r := c.Reason(); r != "last result is 3.001s old (limit 3s); a query has been running for 2.001s" {
		t.Errorf("reason %q", r)
	}
}

func TestPromQLNoSource(t *testing.T) {
	c := buildPromQL(t, &PromQL{QueryString: "up"}, time.Second, nil)
	for i := 0; i < 3; i++ {
		out := []Signal{{}}
		c.Step(Tick{Now: t0.Add(time.Duration(i) * time.Second)}, nil, out)
		if out[0].Valid || c.Reason() != "no PromQL source configured" {
			t.Fatalf("output %v, reason %q", out[0], c.Reason())
		}
	}
	if c.req != nil {
		t.Error("a worker started without a source")
	}
}

// The Runtime closes a stopped circuit's components: the worker ends and
// its hung query is canceled.
func TestPromQLRuntimeCloses(t *testing.T) {
	f := &fakeQuery{hang: true}
	rt, err := NewRuntime(Options{Query: f})
	if err != nil {
		t.Fatal(err)
	}
	p := parseCircuit(t, `
- query:
    promql:
      query_string: up
      out_ports: {output: {signal_name: UP}}
`)
	if err := rt.SetPolicies([]*policies.Policy{p}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rt.Run(ctx); close(done) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, active := f.snapshot(); active == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no query started")
		}
	}
	cancel()
	<-done
	if _, active := f.snapshot(); active != 0 {
		t.Errorf("%d queries still running after the runtime stopped", active)
	}
	f.mu.Lock()
	ctxErrs := append([]error(nil), f.ctxErrs...)
	f.mu.Unlock()
	if len(ctxErrs) != 1 || !errors.Is(ctxErrs[0], context.Canceled) {
		t.Errorf("hung query ended with %v, want canceled", ctxErrs)
	}
	goleak.VerifyNone(t)
}

// Close stops the worker, and a closed component stays invalid.
func TestPromQLClose(t *testing.T) {
	f := &fakeQuery{v: 1}
	c := buildPromQL(t, &PromQL{QueryString: "up"}, time.Second, f)
	if got := stepFor(t, c, t0, isValid); !got.Valid {
		t.Fatal("no value")
	}
	c.Close()
	select {
	case <-c.done:
	default:
		t.Fatal("worker still running after Close")
	}
	out := []Signal{{}}
	c.Step(Tick{Now: t0.Add(time.Hour)}, nil, out)
	if out[0].Valid || c.Reason() != "component closed" {
		t.Errorf("after Close: %v, reason %q", out[0], c.Reason())
	}
	if calls, _ := f.snapshot(); len(calls) != 1 {
		t.Errorf("%d queries, want 1 (none after Close)", len(calls))
	}
	c.Close() // idempotent
	goleak.VerifyNone(t)
}
