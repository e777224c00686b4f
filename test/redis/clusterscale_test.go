package redis

import (
	"context"
	"flag"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
)

var (
	scaleNodeCPU = flag.Float64("paths.node-cpu", 0, "BenchmarkRedisClusterScaling: CPU budget in cores of every Redis node (the standalone one, each master and each replica); 0: none")
	scaleMasters = flag.String("paths.masters", "1,3,6", "BenchmarkRedisClusterScaling: the clusters' numbers of masters, comma-separated")
)

// scaleTarget is one Redis of BenchmarkRedisClusterScaling: a standalone
// server or a cluster, with an engine on it.
type scaleTarget struct {
	name     string
	op       func(context.Context, int, int) error
	masters  []*Server // the standalone server, or the cluster's masters
	replicas []*Server
}

func (t scaleTarget) nodes() []*Server { return append(slices.Clone(t.masters), t.replicas...) }

// BenchmarkRedisClusterScaling runs exact decisions (Engine.Check, a
// backend: redis token bucket, 10,000 keys, -paths.callers callers)
// against one standalone Redis and against real Redis Clusters of
// -paths.masters masters (each with a replica), interleaved, and prints
// for each: throughput, against the standalone server and against the
// 1-master cluster, latency of the calls, the agent's CPU (this process:
// engine, clients and the load's goroutines) and each node's CPU.
//
// With -paths.node-cpu F every Redis node runs on a budget of F cores
// (Server.LimitCPU), as a node on a machine of its own would: with F well
// under a core, Redis is the bottleneck while the agent has CPU left, and
// the table shows whether more masters give more decisions a second. The
// masters' columns show each one's CPU against F (saturated at about F),
// the throttled periods how often each used up its budget.
//
// A node on a budget answers in bursts: a saturated one runs out of its
// quota early in each 10 ms period and waits for the next, so a call
// takes milliseconds and, the load being a closed loop, the callers
// bound the throughput (callers / latency) before the nodes do; and
// each master's batches are about its share of the callers, its CPU a
// check growing as they shrink. Give the load callers in proportion
// (-paths.callers 400 for six masters on 0.1 cores each); with the
// default 50 the table mostly shows the callers spread thin.
//
//	go test ./test/redis -run '^$' -bench RedisClusterScaling -benchtime 1x
//	go test ./test/redis -run '^$' -bench RedisClusterScaling -benchtime 1x -paths.node-cpu 0.1 -paths.callers 400
func BenchmarkRedisClusterScaling(b *testing.B) {
	var counts []int
	for f := range strings.SplitSeq(*scaleMasters, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("-paths.masters %q: want numbers of masters ≥ 1, comma-separated", *scaleMasters)
		}
		counts = append(counts, n)
	}
	run := strconv.FormatInt(benchRuns.Add(1), 10)
	params := "failure_mode: fail_closed, redis_timeout: 1s"
	op := func(e *controlpoint.Engine) func(context.Context, int, int) error {
		return func(ctx context.Context, g, n int) error {
			var d controlpoint.Decision
			client := strconv.Itoa((n*(*pathsCallers) + g) % 10_000)
			e.Check(ctx, time.Now(), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": client}}, &d)
			if !d.Accepted || d.Limiters[0].Failure != "" {
				return fmt.Errorf("decision not made by Redis: %+v", d.Limiters)
			}
			return nil
		}
	}
	budget := *scaleNodeCPU
	srv := Start(b)
	if budget > 0 {
		if err := srv.LimitCPU(b, budget); err != nil {
			b.Fatal(err)
		}
	}
	engine := func(c ratelimit.RedisClient, name string) *controlpoint.Engine {
		return newEngineWith(b, ratelimit.RedisOptions{Client: c, Pipelines: *pathsPipelines, WidePipelines: *pathsWide},
			limiterPolicy(b, "scale-"+name+"-"+run, limiter("ingress", 1e9, params)))
	}
	targets := []scaleTarget{{name: "standalone", op: op(engine(srv.Client(b), "1")), masters: []*Server{srv}}}
	for _, masters := range counts {
		cl := StartCluster(b, masters)
		if budget > 0 {
			if err := cl.LimitCPU(b, budget); err != nil {
				b.Fatal(err)
			}
		}
		addrs, err := cl.Masters(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		t := scaleTarget{name: fmt.Sprintf("cluster, %d master", masters)}
		if masters > 1 {
			t.name += "s"
		}
		for _, s := range cl.Nodes {
			if slices.Contains(addrs, s.Addr) {
				t.masters = append(t.masters, s)
			} else {
				t.replicas = append(t.replicas, s)
			}
		}
		t.op = op(engine(cl.Client(b), "c"+strconv.Itoa(masters)))
		targets = append(targets, t)
	}

	clients := map[*Server]*goredis.Client{}
	for _, t := range targets {
		for _, s := range t.masters {
			clients[s] = s.Client(b)
		}
	}
	res := map[string][]map[string]float64{}
	lats := make([][]time.Duration, *pathsCallers)
	for b.Loop() {
		for range *pathsReps {
			for _, t := range targets {
				for g := range lats {
					lats[g] = lats[g][:0]
				}
				timed := func(ctx context.Context, g, n int) error {
					t0 := time.Now()
					err := t.op(ctx, g, n)
					lats[g] = append(lats[g], time.Since(t0))
					return err
				}
				calls0, reads0 := make([]int, len(t.masters)), make([]int64, len(t.masters))
				for i, s := range t.masters {
					calls0[i], reads0[i] = ScriptCalls(b, clients[s]), readsProcessed(b, clients[s])
				}
				nodes := t.nodes()
				cpu0, thr0 := make([]float64, len(nodes)), make([]int64, len(nodes))
				for i, s := range nodes {
					cpu0[i] = s.CPUSeconds()
					thr0[i], _ = s.Throttled()
				}
				all := func() float64 {
					sum := 0.0
					for _, s := range nodes {
						sum += s.CPUSeconds()
					}
					return sum
				}
				t0 := time.Now()
				m := closedLoopCPU(b, all, timed)
				elapsed := time.Since(t0).Seconds()
				for i, s := range nodes {
					m["cores "+strconv.Itoa(i)] = (s.CPUSeconds() - cpu0[i]) / elapsed
					thr, _ := s.Throttled()
					m["throttled/s "+strconv.Itoa(i)] = float64(thr-thr0[i]) / elapsed
				}
				for i, s := range t.masters {
					calls := float64(ScriptCalls(b, clients[s]) - calls0[i])
					m["calls "+strconv.Itoa(i)] = calls / elapsed
					m["calls/read "+strconv.Itoa(i)] = calls / float64(readsProcessed(b, clients[s])-reads0[i])
				}
				m["agent cores"] = m["cpu"] * m["checks/s"] / 1e6
				var lat []time.Duration
				for _, l := range lats {
					lat = append(lat, l...)
				}
				slices.Sort(lat)
				m["p50"], m["p99"] = quantileUs(lat, 0.5), quantileUs(lat, 0.99)
				res[t.name] = append(res[t.name], m)
			}
		}
	}
	med := func(key, metric string) float64 {
		var xs []float64
		for _, m := range res[key] {
			xs = append(xs, m[metric])
		}
		if len(xs) == 0 {
			return math.NaN()
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	one := fmt.Sprintf("cluster, %d master", 1)
	var out strings.Builder
	fmt.Fprintf(&out, "%d interleaved repetitions of %v, %d callers, 10,000 keys, exact; medians; GOMAXPROCS %d; ", *pathsReps, *pathsDuration, *pathsCallers, runtime.GOMAXPROCS(0))
	if budget > 0 {
		fmt.Fprintf(&out, "every Redis node on %.3g cores\n\n", budget)
	} else {
		fmt.Fprintf(&out, "no CPU budget\n\n")
	}
	fmt.Fprintln(&out, "| Redis | checks/s | × standalone | × 1 master | p50 µs | p99 µs | agent µs CPU/check | agent cores | masters' cores | replicas' cores | redis µs CPU/check (all nodes) | errors |")
	fmt.Fprintln(&out, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	cores := func(t scaleTarget, from, n int) string {
		var f []string
		for i := from; i < from+n; i++ {
			f = append(f, fmt.Sprintf("%.2f", med(t.name, "cores "+strconv.Itoa(i))))
		}
		return strings.Join(f, " ")
	}
	for _, t := range targets {
		cps := med(t.name, "checks/s")
		fmt.Fprintf(&out, "| %s | %.0f | %.2f | %.2f | %.0f | %.0f | %.1f | %.2f | %s | %s | %.1f | %.0f |\n", t.name, cps, cps/med("standalone", "checks/s"), cps/med(one, "checks/s"),
			med(t.name, "p50"), med(t.name, "p99"), med(t.name, "cpu"), med(t.name, "agent cores"),
			cores(t, 0, len(t.masters)), cores(t, len(t.masters), len(t.replicas)), med(t.name, "redis"), med(t.name, "errors"))
	}
	if budget > 0 {
		fmt.Fprintf(&out, "\nperiods a second in which a node used up its budget (of %.0f; masters, then replicas):\n", 1/periodSeconds(budget))
		for _, t := range targets {
			var f []string
			for i := range t.nodes() {
				f = append(f, fmt.Sprintf("%.0f", med(t.name, "throttled/s "+strconv.Itoa(i))))
			}
			fmt.Fprintf(&out, "- %s: %s\n", t.name, strings.Join(f, " "))
		}
	}
	fmt.Fprintf(&out, "\nscripts a second each master ran (scripts a read: how many calls a round trip carried to it):\n")
	for _, t := range targets {
		var f []string
		for i := range t.masters {
			f = append(f, fmt.Sprintf("%.0f (%.1f)", med(t.name, "calls "+strconv.Itoa(i)), med(t.name, "calls/read "+strconv.Itoa(i))))
		}
		fmt.Fprintf(&out, "- %s: %s\n", t.name, strings.Join(f, " "))
	}
	fmt.Print(out.String())
}

// readsProcessed is how many reads from clients the server behind c has
// done (INFO stats total_reads_processed): one for each round trip,
// whatever number of commands it carried.
func readsProcessed(t testing.TB, c *goredis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("redis: INFO stats line %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("redis: INFO stats has no total_reads_processed")
	return 0
}

// periodSeconds is the CFS period of a budget, in seconds.
func periodSeconds(cores float64) float64 {
	p, _, err := cpuQuota(cores)
	if err != nil {
		return math.NaN()
	}
	return p.Seconds()
}
