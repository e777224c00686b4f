package circuit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/circuit/promql"
	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("query.promql", func() Spec { return &PromQL{} }) }

// MinPromQLInterval is the shortest evaluation_interval of a query.promql
// component.
const MinPromQLInterval = 10 * time.Millisecond

// PromQLSameTickWait is the longest a query.promql Step waits for the
// query it has just asked, so that a fast source's answer is used in the
// same tick rather than the next one.
const PromQLSameTickWait = 5 * time.Millisecond

// PromQL is the query.promql component: its output is the value of a
// PromQL query (a scalar, or an instant vector of exactly one sample)
// evaluated every evaluation_interval (default: the circuit's) through the
// agent's PromQL source (Env.Query).
//
// It never blocks a tick: a worker goroutine, started by the first Step
// and stopped by Close, runs one query at a time for the tick that asked
// for it, and Step waits at most PromQLSameTickWait for the query it has
// just asked, so a fast source (the embedded TSDB) feeds the same tick
// while a slow one is read at a later tick. Step reads the latest result:
// the output is valid when the last
// query succeeded and was evaluated for a tick at most 2×evaluation_interval
// plus one circuit interval ago; a query still running after that long is
// abandoned. Otherwise the output is invalid and Reason says why (the
// query's error, "query returned no data", "context deadline exceeded",
// "no PromQL source configured", ...). The component has no inputs.
type PromQL struct {
	QueryString        string        `yaml:"query_string"`
	EvaluationInterval time.Duration `yaml:"evaluation_interval,omitempty"`
	OutPorts           struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook: the query must parse
// and yield a number.
func (s *PromQL) Validate() []error {
	var errs []error
	if strings.TrimSpace(s.QueryString) == "" {
		errs = append(errs, errors.New("query_string is required"))
	} else if err := promql.Check(s.QueryString); err != nil {
		errs = append(errs, fmt.Errorf("query_string: %w", err))
	}
	if s.EvaluationInterval < 0 || (s.EvaluationInterval > 0 && s.EvaluationInterval < MinPromQLInterval) {
		errs = append(errs, fmt.Errorf("evaluation_interval must be at least %v", MinPromQLInterval))
	}
	return errs
}

// Ports implements Spec.
func (s *PromQL) Ports() ([]InPort, []OutPort) {
	return nil, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec. It starts nothing: the worker starts with the
// first Step, so a circuit compiled only to be validated holds no
// goroutine.
func (s *PromQL) Build(env *Env) (Component, error) {
	every := s.EvaluationInterval
	if every <= 0 {
		every = env.Interval
	}
	every = max(every, MinPromQLInterval)
	return &promqlQuery{
		query:  s.QueryString,
		every:  every,
		maxAge: 2*every + env.Interval,
		api:    env.Query,
		policy: env.Policy.Name,
	}, nil
}

var (
	_ Component = (*promqlQuery)(nil)
	_ Reasoner  = (*promqlQuery)(nil)
	_ Closer    = (*promqlQuery)(nil)
)

// promqlQuery is a built query.promql component.
type promqlQuery struct {
	query  string
	every  time.Duration
	maxAge time.Duration // of a result, and of a query in flight
	api    QueryAPI
	policy string

	mu       sync.Mutex
	req      chan time.Time     // guarded by mu; nil until the worker starts
	cancel   context.CancelFunc // guarded by mu; stops the worker
	done     chan struct{}      // guarded by mu; closed when the worker ends
	closed   bool               // guarded by mu
	inflight bool               // guarded by mu: a query was asked and has not returned
	returned chan struct{}      // guarded by mu: closed when the query in flight returns
	asked    time.Time          // guarded by mu: tick of the last query asked
	res      queryResult        // guarded by mu: the last query that returned
	reason   string             // guarded by mu: why the last Step's output was invalid
}

type queryResult struct {
	at   time.Time // the tick the query was evaluated for
	v    float64
	err  error
	done bool // a query has returned
}

func (c *promqlQuery) Step(t Tick, _, out []Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		c.reason = "no PromQL source configured"
		return
	}
	if c.closed {
		c.reason = "component closed"
		return
	}
	if c.req == nil {
		c.startLocked()
	}
	if !c.inflight && (c.asked.IsZero() || t.Now.Sub(c.asked) >= c.every) {
		c.req <- t.Now // never blocks: the buffer holds one and none is pending
		c.inflight, c.asked = true, t.Now
		// A fast source (the embedded TSDB answers in well under a
		// millisecond) feeds this very tick; a slow one is read at a
		// later tick. Either way the wait is bounded.
		returned := make(chan struct{})
		c.returned = returned
		c.mu.Unlock()
		wait := time.NewTimer(PromQLSameTickWait)
		select {
		case <-returned:
		case <-wait.C:
		}
		wait.Stop()
		c.mu.Lock()
	}
	r := c.res
	switch age := t.Now.Sub(r.at); {
	case !r.done:
		c.reason = "waiting for the first query result"
	case r.err != nil:
		c.reason = r.err.Error()
	case age > c.maxAge:
		c.reason = fmt.Sprintf("last result is %v old (limit %v)", age, c.maxAge)
		if c.inflight {
			c.reason += fmt.Sprintf("; a query has been running for %v", t.Now.Sub(c.asked))
		}
	default:
		c.reason = ""
		out[0] = Value(r.v)
	}
}

// startLocked starts the worker.
func (c *promqlQuery) startLocked() {
	ctx, cancel := context.WithCancel(context.Background())
	c.req, c.cancel, c.done = make(chan time.Time, 1), cancel, make(chan struct{})
	go c.run(ctx, c.req, c.done)
}

// run is the worker: it evaluates the query for each tick Step asks it
// to, one at a time, each within maxAge.
func (c *promqlQuery) run(ctx context.Context, req <-chan time.Time, done chan<- struct{}) {
	defer close(done)
	ctx = promql.WithPolicy(ctx, c.policy)
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-req:
			qctx, cancel := context.WithTimeout(ctx, c.maxAge)
			v, err := c.api.Query(qctx, c.query, at)
			cancel()
			if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
				err = fmt.Errorf("query returned %v", v)
			}
			c.mu.Lock()
			c.inflight = false
			c.res = queryResult{at: at, v: v, err: err, done: true}
			if c.returned != nil {
				close(c.returned)
				c.returned = nil
			}
			c.mu.Unlock()
		}
	}
}

// Reason implements Reasoner.
func (c *promqlQuery) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Close implements Closer: it cancels a running query and waits for the
// worker to end. Step afterwards outputs Invalid.
func (c *promqlQuery) Close() {
	c.mu.Lock()
	c.closed = true
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}
