package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

// queued is a load scheduler that admits half the incoming rate (a
// constant load_multiplier), its flows waiting at most 50 ms, and a
// circuit that only reads the flux meter's latency.
const queued = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: queued}
spec:
  circuit:
    components:
      - query: {promql: {query_string: "up", out_ports: {output: {signal_name: LATENCY}}}}
      - flow_control:
          load_scheduler:
            selectors: [{control_point: ingress}]
            in_ports: {load_multiplier: {constant_signal: {value: 0.5}}}
            parameters:
              default_workload_parameters: {queue_timeout: 50ms}
`

func closedRun(t *testing.T, policy, plant string) *Table {
	t.Helper()
	docs, err := policies.Parse("policy.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePlant("plant.yaml", []byte(plant))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Closed(docs[0].Object.(*policies.Policy), p)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestLatencyFromAdmission: the load scheduler admits 50 of 100 flows a
// second, each after waiting in its queue; the service (one worker,
// 10 ms) is never busy. The flux meter measures from admission (10 ms),
// the clients from their send time (the wait included), so no flow is
// goodput within 45 ms although the circuit reads 10 ms. (A token comes
// every 20 ms and goes to the oldest flow, which has waited 40 ms: its
// flows take 50 ms, exactly on a bound of 50 ms, where the order of
// events at the same instant decides.)
func TestLatencyFromAdmission(t *testing.T) {
	tab := closedRun(t, queued, `
capacity: 100
base_latency: 10ms
duration: 20s
good_latency: 45ms
load: [{at: 0s, rps: 100}]
signals: {LATENCY: latency_ms}
`)
	lat, adm := tab.Column("LATENCY"), tab.Column("plant.admitted_rps")
	good, rej := tab.Column("plant.goodput_rps"), tab.Column("plant.rejected_rps")
	for i := 10; i < 19; i++ {
		if math.Abs(lat[i]-10) > 0.5 || math.Abs(adm[i]-50) > 3 || math.Abs(rej[i]-50) > 3 {
			t.Errorf("tick %d: latency %.2f ms, admitted %.1f/s, rejected %.1f/s; want 10 ms, 50/s, 50/s", i, lat[i], adm[i], rej[i])
		}
		if good[i] > 5 {
			t.Errorf("tick %d: goodput %.0f/s, want about none: admitted flows waited about 40 ms of their 50 ms queue_timeout", i, good[i])
		}
	}
}

// TestClientsGiveUp: twice the capacity with nothing in front of the
// service: the backlog grows until flows take longer than the clients'
// 1 s, who give up; the service still serves every admitted flow (its
// flux meter counts the flows whose clients left when they leave).
func TestClientsGiveUp(t *testing.T) {
	tab := closedRun(t, `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: open}
spec:
  circuit:
    components:
      - query: {promql: {query_string: "up", out_ports: {output: {signal_name: LATENCY}}}}
`, `
capacity: 100
base_latency: 10ms
duration: 10s
timeout: 1s
load: [{at: 0s, rps: 200}]
signals: {LATENCY: latency_ms}
`)
	to, good, queue := tab.Column("plant.timeout_rps"), tab.Column("plant.goodput_rps"), tab.Column("plant.queue")
	// A flow sent at t waits behind a backlog of t seconds: those of the
	// first 40 ms are goodput (within 5 × 10 ms), those of the last 10 ms
	// of the first second are given up.
	if to[0] > 3 || good[0] < 7 || good[0] > 9 {
		t.Errorf("first second: %.0f/s given up, %.0f/s goodput; want 2 and 8", to[0], good[0])
	}
	for i := 2; i < 9; i++ {
		if to[i] < 190 || good[i] != 0 {
			t.Errorf("tick %d: %.0f/s given up, %.0f/s goodput; want all the flows sent then given up", i, to[i], good[i])
		}
	}
	if want := 100.0 * 9; math.Abs(queue[9]-want) > 20 {
		t.Errorf("backlog at 9 s %.0f, want about %.0f: flows whose client left are still served", queue[9], want)
	}
}

// TestScrapeLag: the queries read counters sampled every second,
// scrape_offset after a tick; an overload starting at 5 s shows in the
// latency a tick later when the samples are taken just before the ticks,
// two ticks later when just after.
func TestScrapeLag(t *testing.T) {
	const plant = `
capacity: 100
base_latency: 10ms
duration: 10s
load: [{at: 0s, rps: 50}, {at: 5s, rps: 300}]
signals: {LATENCY: latency_ms}
`
	for _, c := range []struct {
		offset    string
		firstHigh int
	}{{"999ms", 6}, {"1ms", 7}} {
		lat := closedRun(t, queued, plant+"scrape_offset: "+c.offset+"\n").Column("LATENCY")
		for i := 2; i <= c.firstHigh; i++ {
			if high := lat[i] > 12; high != (i == c.firstHigh) {
				t.Errorf("scrape_offset %s: latency %.1f ms at tick %d; want the overload seen first at tick %d", c.offset, lat[i], i, c.firstHigh)
			}
		}
	}
}

// TestLightLoadIsNotRejected: a load scheduler that admits 1.2 × the
// incoming rate, with a queue_timeout (20 ms) shorter than its token
// interval (42.5 ms at test/protect's warm-up of 19.6 flows/s; 83 ms at
// 10 flows/s), rejects nothing under light load: flows that find the
// bucket empty wait up to two token intervals instead of 20 ms. Without
// that floor, the flow that set the first limit found an empty bucket
// (TestFirstLimitStartsWithAFullBucket) and, when the load doubles, one
// flow missed a token while the rate followed the arrivals.
func TestLightLoadIsNotRejected(t *testing.T) {
	policy := strings.Replace(queued, "value: 0.5", "value: 1.2", 1)
	policy = strings.Replace(policy, "queue_timeout: 50ms", "queue_timeout: 20ms", 1)
	for _, c := range []struct{ name, load string }{
		{"warm-up", "[{at: 0s, rps: 19.6}]"},                       // test/protect's sequential warm-up, 5 × 50 ms
		{"load doubles", "[{at: 0s, rps: 10}, {at: 5s, rps: 20}]"}, // the rate lags by an update or two
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := closedRun(t, policy, `
capacity: 98.6
base_latency: 50.7ms
duration: 10s
load: `+c.load+`
signals: {LATENCY: latency_ms}
`)
			for i, v := range tab.Column("plant.rejected_rps") {
				if v != 0 {
					t.Errorf("second %d: %.0f flows rejected, want none: the load is below the admission rate", i, v)
				}
			}
		})
	}
}

// TestFirstLimitStartsWithAFullBucket: the simulator's bucket, as the
// agent's scheduler.Scheduler, starts full when a limit is set on an
// unlimited bucket, and keeps what it holds when a limit changes.
func TestFirstLimitStartsWithAFullBucket(t *testing.T) {
	b := &bucket{rate: math.Inf(1)}
	b.setRate(1, 23.5)
	if b.tokens != 2.35 {
		t.Fatalf("first limit of 23.5/s: %v tokens, want a full bucket of 2.35", b.tokens)
	}
	if ok, _ := b.TryTake(Epoch.Add(time.Second), "", 2); !ok {
		t.Fatal("2 tokens of a full bucket of 2.35 refused")
	}
	b.setRate(1, 200)
	if b.tokens > 0.36 {
		t.Fatalf("a higher limit refilled the bucket: %v tokens", b.tokens)
	}
}

// TestNoRejectionAfterAPause: test/protect's start in the simulator. A
// sequential warm-up, a pause of about 150 ms while the driver starts, then
// the first base phase at half the capacity; a load scheduler at 1.2 × the
// incoming rate with test/protect's 20 ms queue_timeout rejects none of
// it. (The pause halved the incoming-rate estimate, and the first
// 100–300 ms of the base phase were admitted at less than arrived: 2–4
// rejections, 0.4–0.5 % of the real base phase.)
func TestNoRejectionAfterAPause(t *testing.T) {
	policy := strings.Replace(queued, "value: 0.5", "value: 1.2", 1)
	policy = strings.Replace(policy, "queue_timeout: 50ms", "queue_timeout: 20ms", 1)
	for _, c := range []struct{ name, plant string }{
		{"5 × 50 ms", "capacity: 98.6\nbase_latency: 50.7ms\nload: [{at: 0s, rps: 19.6}, {at: 3s, rps: 0}, {at: 3150ms, rps: 49.3}]\n"},
		{"3 × 10 ms", "capacity: 267\nbase_latency: 10.7ms\nload: [{at: 0s, rps: 93}, {at: 3s, rps: 0}, {at: 3110ms, rps: 133}]\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := closedRun(t, policy, c.plant+"duration: 10s\nsignals: {LATENCY: latency_ms}\n")
			for i, v := range tab.Column("plant.rejected_rps") {
				if v != 0 {
					t.Errorf("second %d: %.0f flows rejected, want none: the load is below the admission rate", i, v)
				}
			}
		})
	}
}
