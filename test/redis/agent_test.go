package redis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/controlpoint"
)

// issuePolicy is the example of issue 7, verbatim but for the limit.
const issuePolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-client}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters:
              limit_by_label_key: http.request.header.x_client_id
              interval: 1s
              backend: redis              # local (default) | redis
              algorithm: sliding_window   # token_bucket (default) | sliding_window
              failure_mode: fail_open     # fail_open (default) | fail_closed | local_fallback
              redis_timeout: 5ms
`

func startAgent(t *testing.T, redisAddr string) *agent.Agent {
	t.Helper()
	cfg := agenttest.Config(t, issuePolicy)
	cfg.Redis.Address = redisAddr
	a := agenttest.Start(t, cfg)
	return a
}

// Two agents configured with redis.address load the issue's policy and
// share its limit; health shows the Redis state, degraded while Redis is
// gone.
func TestAgentsShareLimitThroughRedis(t *testing.T) {
	srv := Start(t)
	agents := []*agent.Agent{startAgent(t, srv.Addr), startAgent(t, srv.Addr)}
	for i, a := range agents {
		if n := len(a.Store().Snapshot().Entries); n != 1 {
			t.Fatalf("agent %d loaded %d policies: %v", i, n, a.Store().Snapshot().Errors)
		}
	}
	check := func(a *agent.Agent, client string) controlpoint.Decision {
		var d controlpoint.Decision
		// A generous deadline is the caller's; the policy's 5ms still
		// bounds the Redis call.
		a.Engine().Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: "ingress",
			Labels: map[string]string{"http.request.header.x_client_id": client}}, &d)
		return d
	}
	// Ten checks of one client through both agents. On a loaded machine
	// a Redis call may outlive the 5ms (fail_open admits it, though Redis
	// may have counted it): a round with a failure is run again with a
	// new client, until one runs clean.
	admitted, clean := 0, false
	for round := 0; round < 5 && !clean; round++ {
		admitted, clean = 0, true
		for i := range 10 {
			d := check(agents[i%2], fmt.Sprintf("acme-%d", round))
			if d.Limiters[0].Failure != "" {
				clean = false
				break
			}
			if d.Accepted {
				admitted++
			}
		}
	}
	if !clean {
		t.Fatal("every round of 10 checks had a Redis call past its 5ms")
	}
	if admitted != 5 {
		t.Errorf("two agents admitted %d of 10, want the shared limit 5", admitted)
	}
	h := agents[0].Health().Report().Components["redis"]
	if h.Status != agent.StatusHealthy || !strings.Contains(h.Message, "breaker closed") {
		t.Errorf("redis health with Redis up = %+v", h)
	}

	srv.Kill()
	d := check(agents[0], "acme")
	if !d.Accepted || !strings.HasPrefix(d.Limiters[0].Failure, "fail_open: ") {
		t.Errorf("Redis down: accepted %v, failure %q; want fail_open", d.Accepted, d.Limiters[0].Failure)
	}
	h = agents[0].Health().Report().Components["redis"]
	if h.Status != agent.StatusDegraded || len(h.Errors) == 0 {
		t.Errorf("redis health with Redis down = %+v, want degraded with the error", h)
	}
	if r := agents[0].Health().Report(); r.Status == agent.StatusUnhealthy {
		t.Errorf("Redis is optional: agent health %s", r.Status)
	}
}

// An agent without Redis refuses a backend: redis policy and says why.
func TestAgentWithoutRedisRefusesPolicy(t *testing.T) {
	a := startAgent(t, "")
	snap := a.Store().Snapshot()
	if len(snap.Entries) != 0 || len(snap.Errors) == 0 {
		t.Fatalf("entries %d, errors %v: want the policy refused", len(snap.Entries), snap.Errors)
	}
	msg := fmt.Sprint(snap.Errors)
	if !strings.Contains(msg, "this agent has no Redis: set redis.address") {
		t.Errorf("refusal %s does not say what to configure", msg)
	}
}
