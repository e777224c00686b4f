package redis

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/policies"
)

// clusterEngine is one agent's engine on a Redis Cluster, with the
// cluster client the agent builds.
func clusterEngine(t testing.TB, c *Cluster, ps []*policies.Policy) *controlpoint.Engine {
	t.Helper()
	return newEngineWith(t, ratelimit.RedisOptions{Client: c.Client(t)}, ps)
}

// bucketKey is the Redis key of the token bucket of value for the rate
// limiter scope (namespace/policy:component).
func bucketKey(t testing.TB, scope, value string) string {
	b, err := ratelimit.NewRedisBackend(ratelimit.RedisOptions{Client: goredis.NewClient(&goredis.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	return b.NewLimiter(ratelimit.RedisLimiterOptions{Scope: scope}).Key(value)
}

// dbsize is the number of keys the node at addr holds.
func dbsize(t testing.TB, addr string) int64 {
	t.Helper()
	cl := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer func() { _ = cl.Close() }()
	n, err := cl.DBSize(context.Background()).Result()
	if err != nil {
		t.Fatalf("DBSIZE on %s: %v", addr, err)
	}
	return n
}

// A global limit on a real Redis Cluster (three masters, three
// replicas): each key's bucket is decided exactly, the buckets spread
// over the masters by slot, and the slot Redis gives each bucket's key
// is the one we compute for its hash tag.
func TestClusterSpreadsBucketsOverMasters(t *testing.T) {
	cl := StartCluster(t, 3)
	ps := limiterPolicy(t, "spread", limiter("ingress", 5, "failure_mode: fail_closed, redis_timeout: 1s"))
	e := clusterEngine(t, cl, ps)
	const keys, checks = 60, 8
	for k := range keys {
		admitted := 0
		for range checks {
			var d controlpoint.Decision
			e.Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "c" + strconv.Itoa(k)}}, &d)
			if d.Limiters[0].Failure != "" {
				t.Fatalf("key %d: decision not made by Redis: %s", k, d.Limiters[0].Failure)
			}
			if d.Accepted {
				admitted++
			}
		}
		if admitted != 5 {
			t.Errorf("key %d: %d of %d admitted, want the limit 5", k, admitted, checks)
		}
	}
	masters, err := cl.Masters(context.Background())
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v (%v), want 3", masters, err)
	}
	var total int64
	holding := 0
	var spread []string
	for _, m := range masters {
		n := dbsize(t, m)
		total += n
		if n > 0 {
			holding++
		}
		spread = append(spread, m+": "+strconv.FormatInt(n, 10))
	}
	t.Logf("buckets per master: %s", strings.Join(spread, ", "))
	if total != keys {
		t.Errorf("the masters hold %d keys, want one per bucket: %d", total, keys)
	}
	if holding < 2 {
		t.Errorf("every bucket is on one master: %v", spread)
	}
	// Redis's own slot of a bucket key is the slot of its hash tag.
	cc := cl.Client(t)
	for _, v := range []string{"c0", "c1", "a}b", strings.Repeat("k", 300)} {
		key := bucketKey(t, "default/spread:0", v)
		got, err := cc.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if int(got) != keySlot(key) {
			t.Errorf("CLUSTER KEYSLOT %q = %d, we compute %d", key, got, keySlot(key))
		}
	}
}

// clusterDecision is one decision of the failover test.
type clusterDecision struct {
	sent     time.Time // when the check was asked: before Redis decided it
	at       time.Time // when the check returned: after Redis decided it
	accepted bool
	failure  string
}

// A master of a real Redis Cluster is killed under load: while its
// replica is promoted, decisions on its buckets follow the declared
// failure mode (fail_closed rejects, fail_open admits); once the replica
// serves the slots, decisions are made by Redis again and the limit
// holds exactly, as it did before the kill.
func TestClusterFailover(t *testing.T) {
	for _, mode := range []string{"fail_closed", "fail_open"} {
		t.Run(mode, func(t *testing.T) { testClusterFailover(t, mode) })
	}
}

func testClusterFailover(t *testing.T, mode string) {
	// Far below what the four callers offer even on a loaded machine
	// (they make 200–10,000 checks/s): each refill is taken at once, so a
	// window holds one refill. Near the limit, a refill not yet taken
	// when a window starts would be counted in it.
	const limit = 50.0
	cl := StartCluster(t, 3)
	ps := limiterPolicy(t, "failover", limiter("ingress", limit, "failure_mode: "+mode+", redis_timeout: 250ms"))
	e := clusterEngine(t, cl, ps)
	check := func() clusterDecision {
		var d controlpoint.Decision
		before := time.Now()
		e.Check(context.Background(), before, &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "acme"}}, &d)
		return clusterDecision{sent: before, at: time.Now(), accepted: d.Accepted, failure: d.Limiters[0].Failure}
	}
	created := time.Now() // the bucket refills whole intervals from here
	if d := check(); d.failure != "" || !d.accepted {
		t.Fatalf("first decision: %+v", d)
	}
	// The master that holds acme's bucket, and its replica.
	masters, err := cl.Masters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	victim := ""
	for _, m := range masters {
		if dbsize(t, m) == 1 {
			victim = m
		}
	}
	if victim == "" {
		t.Fatalf("no master holds the bucket (masters %v)", masters)
	}

	// Four callers offer far more than the limit for the whole test.
	// answered is when Redis first decided after the kill.
	var killedAt, answered atomic.Int64
	stop := make(chan struct{})
	var mu sync.Mutex
	var all []clusterDecision
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var mine []clusterDecision
			for {
				select {
				case <-stop:
					mu.Lock()
					all = append(all, mine...)
					mu.Unlock()
					return
				default:
				}
				d := check()
				mine = append(mine, d)
				if d.failure == "" && killedAt.Load() != 0 && d.at.UnixNano() > killedAt.Load() {
					answered.CompareAndSwap(0, d.at.UnixNano())
				}
				time.Sleep(200 * time.Microsecond) // about 10,000 checks/s in all at most
			}
		})
	}
	stopped := false
	finish := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer finish()

	start := time.Now()
	time.Sleep(2500 * time.Millisecond)
	killed := time.Now()
	cl.Node(victim).Kill()
	killedAt.Store(time.Now().UnixNano())
	if err := cl.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	healthy := time.Now()
	for deadline := healthy.Add(20 * time.Second); answered.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Redis decided nothing in the 20s after the failover")
		}
	}
	// At least three full windows of the bucket's refill grid after that.
	time.Sleep(5500 * time.Millisecond)
	end := time.Now()
	finish()

	masters, err = cl.Masters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed master %s at +%v; cluster healthy again at +%v; masters now %v",
		victim, killed.Sub(start).Round(time.Millisecond), healthy.Sub(start).Round(time.Millisecond), masters)
	for _, m := range masters {
		if m == victim {
			t.Fatalf("the killed master %s still serves slots", victim)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("masters after failover %v, want 3 (the replica promoted)", masters)
	}

	// During the failover: the declared failure mode decides.
	failed, failedBefore, firstOK := 0, 0, time.Time{}
	reasons := map[string]int{}
	for _, d := range all {
		if d.failure != "" {
			failed++
			reasons[d.failure]++
			if d.at.Before(killed) {
				failedBefore++
			}
			if d.accepted != (mode == "fail_open") || !strings.HasPrefix(d.failure, mode+": ") {
				t.Fatalf("a decision without Redis was %+v: want it decided by %s", d, mode)
			}
		}
	}
	for _, d := range all {
		if d.failure == "" && d.at.After(healthy) && (firstOK.IsZero() || d.at.Before(firstOK)) {
			firstOK = d.at
		}
	}
	t.Logf("%d decisions, %d by the failure mode (%d before the kill): %v; first decision by Redis after the failover at +%v",
		len(all), failed, failedBefore, reasons, firstOK.Sub(start).Round(time.Millisecond))
	t.Logf("Redis decided again %v after the kill (the cluster was healthy again %v after it)",
		time.Unix(0, answered.Load()).Sub(killed).Round(time.Millisecond), healthy.Sub(killed).Round(time.Millisecond))
	if failed == 0 {
		t.Errorf("no decision saw the master gone")
	}
	if firstOK.IsZero() {
		t.Fatalf("no decision was made by Redis after the failover")
	}
	// A second after Redis answered again, Redis decides (a timeout on a
	// busy machine aside).
	late, lateFailed := 0, 0
	for _, d := range all {
		if d.at.After(firstOK.Add(time.Second)) {
			late++
			if d.failure != "" {
				lateFailed++
			}
		}
	}
	if lateFailed*100 > late {
		t.Errorf("%d of %d decisions a second after Redis answered again were not made by Redis", lateFailed, late)
	}
	var admitted []clusterDecision
	for _, d := range all {
		if d.accepted && d.failure == "" {
			admitted = append(admitted, d)
		}
	}
	// Exact before the kill (the first window holds the full bucket) and
	// again from a second after Redis answered (fail_open's admissions
	// without Redis are not counted: Redis did not decide them).
	// Windows on the bucket's refill grid: from its creation before the
	// kill; after the failover from its last refill as Redis holds it (a
	// bucket untouched for its TTL, 2s here, expired during the failover
	// and was made again, full, on a new grid).
	grid := func(origin, t time.Time) time.Time { // the first grid point at or after t
		k := t.Sub(origin) / time.Second
		if origin.Add(k * time.Second).Before(t) {
			k++
		}
		return origin.Add(k * time.Second)
	}
	last, err := cl.Client(t).HGet(context.Background(), bucketKey(t, "default/failover:0", "acme"), "l").Int64()
	if err != nil {
		t.Fatal(err)
	}
	before, edgeBefore := windowsOf(admitted, grid(created, start), killed)
	refilled := time.UnixMicro(last)
	after, edgeAfter := windowsOf(admitted, grid(refilled, firstOK.Add(time.Second)), end)
	t.Logf("admitted per full window: before the kill %v (+%d on an edge), after the failover %v (+%d on an edge) (limit %v)", before, edgeBefore, after, edgeAfter, limit)
	if len(before) < 1 || len(after) < 3 {
		t.Fatalf("too few full windows: before %v, after %v", before, after)
	}
	// The limit holds: over the full windows before the kill, and over
	// those from a second after Redis answered again, the admissions are
	// at most the limit per window (1% for the windows' edges: one may
	// split the burst right after a refill with the next), and not much
	// less (a decision that timed out on a busy machine leaves its token
	// to a refill that may find the bucket full).
	//
	// Redis decides on its own clock, somewhere between a check's start
	// and its return; on a busy machine that can be tens of milliseconds
	// apart. A decision is counted in a window only when it surely
	// happened inside it; those that may have happened on either side of
	// a window's edge (edge) can go either way.
	for _, w := range []struct {
		name   string
		counts []int
		edge   int
	}{{"before the kill", before, edgeBefore}, {"after the failover", after, edgeAfter}} {
		sum := 0
		for _, n := range w.counts {
			sum += n
		}
		if want := limit * float64(len(w.counts)); float64(sum) > 1.01*want || float64(sum+w.edge) < 0.95*want {
			t.Errorf("%s: %d admitted in %d windows (+%d on an edge), want %v (at most +1%%, at least -5%%): %v", w.name, sum, len(w.counts), w.edge, want, w.counts)
		}
	}
}

// windowsOf counts the decisions made surely inside each full window of
// a second from first until end ([sent, at] within it), and how many
// straddle one of those windows' edges.
func windowsOf(ds []clusterDecision, first, end time.Time) (counts []int, edge int) {
	last := first
	for w := first; !w.Add(time.Second).After(end); w = w.Add(time.Second) {
		n := 0
		for _, d := range ds {
			if !d.sent.Before(w) && d.at.Before(w.Add(time.Second)) {
				n++
			}
		}
		counts = append(counts, n)
		last = w.Add(time.Second)
	}
	for _, d := range ds {
		for w := first; !w.After(last); w = w.Add(time.Second) {
			if d.sent.Before(w) && !d.at.Before(w) {
				edge++
				break
			}
		}
	}
	return counts, edge
}

// TestClusterOneMaster: StartCluster makes clusters of fewer than 3
// masters by hand (redis-cli refuses them); one master serves every slot,
// with its replica synced, and an engine's decisions are made there.
func TestClusterOneMaster(t *testing.T) {
	cl := StartCluster(t, 1)
	masters, err := cl.Masters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) != 1 || len(cl.Nodes) != 2 {
		t.Fatalf("masters %v of %d nodes, want 1 of 2", masters, len(cl.Nodes))
	}
	e := clusterEngine(t, cl, limiterPolicy(t, "one-master", limiter("ingress", 5, "failure_mode: fail_closed, redis_timeout: 1s")))
	accepted := 0
	for range 8 {
		var d controlpoint.Decision
		e.Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "a"}}, &d)
		if f := d.Limiters[0].Failure; f != "" {
			t.Fatalf("decision not made by Redis: %s", f)
		}
		if d.Accepted {
			accepted++
		}
	}
	if accepted != 5 {
		t.Errorf("accepted %d of 8, want 5", accepted)
	}
	if n := dbsize(t, masters[0]); n != 1 {
		t.Errorf("the master holds %d keys, want 1", n)
	}
}
