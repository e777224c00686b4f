package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/policies"
)

// retryCapacity is the bucket of the no-replay tests: large, refilled by
// one token an hour, so the tokens it lost are the takes Redis ran.
const retryCapacity = 1_000_000

func retryPolicy(t testing.TB) []*policies.Policy {
	return limiterPolicy(t, "replay", `      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {constant_signal: {value: 1000000}}, fill_amount: {constant_signal: {value: 1}}}
            parameters: {limit_by_label_key: client, interval: 1h, backend: redis, failure_mode: fail_closed, redis_timeout: 1s}
`)
}

// charged is how many tokens acme's bucket lost: the takes Redis ran.
func charged(t testing.TB, c goredis.Cmdable) int {
	t.Helper()
	tokens, err := c.HGet(context.Background(), bucketKey(t, "default/replay:0", "acme"), "t").Float64()
	if err != nil {
		t.Fatal(err)
	}
	return retryCapacity - int(tokens)
}

// A take whose reply the network lost is never sent again: Redis may
// have run it, and a second send would charge it twice. The link drops a
// connection after Redis ran the script and before its reply reached
// the client; the decision falls back to the failure mode, and the
// bucket holds exactly one take per decision. Against a real Redis
// Cluster (whose go-redis client resends a command after a network
// error unless told not to) and, for comparison, a single Redis.
func TestLostReplyNotReplayed(t *testing.T) {
	for _, target := range []string{"cluster", "standalone"} {
		t.Run(target, func(t *testing.T) {
			link := &LossyLink{}
			var client ratelimit.RedisClient
			var reader goredis.Cmdable
			if target == "cluster" {
				cl := StartCluster(t, 3)
				client, reader = cl.ClientVia(t, link.Dial), cl.Client(t)
			} else {
				srv := Start(t)
				client, reader = srv.ClientVia(t, link.Dial), srv.Client(t)
			}
			e := newEngineWith(t, ratelimit.RedisOptions{Client: client}, retryPolicy(t))
			check := func() controlpoint.LimiterDecision {
				var d controlpoint.Decision
				e.Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "acme"}}, &d)
				return d.Limiters[0]
			}
			if d := check(); d.Failure != "" {
				t.Fatalf("first decision: %+v", d)
			}
			link.Arm()
			lost := check()
			if link.Hits() != 1 {
				t.Fatalf("the link lost no reply (hits %d)", link.Hits())
			}
			if d := check(); d.Failure != "" {
				t.Fatalf("decision after the lost reply: %+v", d)
			}
			got := charged(t, reader)
			t.Logf("3 decisions, the second's reply lost (%+v); the bucket was charged %d tokens", lost, got)
			if got != 3 {
				t.Errorf("3 decisions charged %d tokens, want 3: a take was sent again after its reply was lost", got)
			}
			if lost.Failure == "" {
				t.Errorf("the decision whose reply was lost was made by Redis (%+v): it was sent again", lost)
			}
		})
	}
}

// The same for takes sent together: concurrent decisions share a
// pipeline, the link drops the connection after Redis ran the whole
// pipeline, and none of its takes is sent again.
func TestLostPipelineNotReplayed(t *testing.T) {
	cl := StartCluster(t, 3)
	link := &LossyLink{MinScripts: 2}
	e := newEngineWith(t, ratelimit.RedisOptions{Client: cl.ClientVia(t, link.Dial)}, retryPolicy(t))
	check := func() controlpoint.LimiterDecision {
		var d controlpoint.Decision
		e.Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "acme"}}, &d)
		return d.Limiters[0]
	}
	if d := check(); d.Failure != "" {
		t.Fatalf("first decision: %+v", d)
	}
	link.Arm()
	// Sixteen callers at once, until the link has dropped a pipeline and
	// each caller has decided 20 more times (at most 10 s).
	var decisions, failed atomic.Int64
	decisions.Store(1)
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			after := 0
			for after < 20 && time.Now().Before(deadline) {
				d := check()
				decisions.Add(1)
				if d.Failure != "" {
					failed.Add(1)
				}
				if link.Hits() > 0 {
					after++
				}
			}
		})
	}
	wg.Wait()
	if link.Hits() == 0 {
		t.Fatalf("no pipeline of two takes or more formed in %d decisions", decisions.Load())
	}
	got := charged(t, cl.Client(t))
	ok := decisions.Load() - failed.Load()
	t.Logf("%d decisions, %d by the failure mode (the lost takes, then the breaker open); a pipeline of %d takes lost its replies; the bucket was charged %d tokens",
		decisions.Load(), failed.Load(), link.Lost(), got)
	// Each decision Redis made was charged once; a failed one at most
	// once, and only if its take ran: one whose reply the link lost.
	if most := ok + min(failed.Load(), link.Lost()); int64(got) > most || int64(got) < ok {
		t.Errorf("the bucket was charged %d tokens, want %d to %d: %d decisions made by Redis, %d takes ran with their replies lost, %d decisions by the failure mode: takes were sent again",
			got, ok, most, ok, link.Lost(), failed.Load())
	}
	if failed.Load() < link.Lost() {
		t.Errorf("%d takes lost their replies but only %d decisions fell back to the failure mode: the others were sent again",
			link.Lost(), failed.Load())
	}
}
