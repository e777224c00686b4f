package blueprints

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/circuit/sim"
	"github.com/fluxgate/fluxgate/policies"
)

// TestServiceProtectionMatchesExample runs the policy generated from the
// example values with loop flux_meter and the hand-written policies/examples/service-protection.yaml
// against the same overloaded plant: every signal and actuator input must
// be the same at every tick.
func TestServiceProtectionMatchesExample(t *testing.T) {
	b, _ := Lookup("service-protection")
	values := string(b.Values())
	for _, r := range [][2]string{
		{"loop: in_path", "loop: flux_meter"},
	} {
		if !strings.Contains(values, r[0]) {
			t.Fatalf("the example values no longer say %q", r[0])
		}
		values = strings.Replace(values, r[0], r[1], 1)
	}
	out, err := b.Generate("values.yaml", []byte(values))
	if err != nil {
		t.Fatal(err)
	}
	const plantFile = "../circuit/sim/testdata/checkout-plant.yaml"
	data, err := os.ReadFile(plantFile)
	if err != nil {
		t.Fatal(err)
	}
	plant, err := sim.ParsePlant(plantFile, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sim.Closed(out.Policy, plant)
	if err != nil {
		t.Fatal(err)
	}
	exData, err := os.ReadFile("../policies/examples/service-protection.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse("service-protection.yaml", exData)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sim.Closed(docs[0].Object.(*policies.Policy), plant)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Columns, ",") != strings.Join(want.Columns, ",") {
		t.Fatalf("columns %v, want %v", got.Columns, want.Columns)
	}
	for r := range want.Rows {
		for c, w := range want.Rows[r] {
			if g := got.Rows[r][c]; g != w && !(math.IsNaN(g) && math.IsNaN(w)) {
				t.Fatalf("tick %d, %s = %v, the example has %v", r, got.Columns[c], g, w)
			}
		}
	}
	mult := got.Column("MULTIPLIER")
	if mult[len(mult)-1] >= 1 {
		t.Errorf("the load multiplier ends at %v under 3× overload", mult[len(mult)-1])
	}
}

// protectFluxMeterValues are the values test/protect gives the blueprint
// (test/protect/gateway.go: two workloads on the X-Priority header) with
// the flux-meter loop.
const protectFluxMeterValues = `policy_name: service-protection
flux_meter_name: ingress-latency
loop: flux_meter
selectors:
  - control_point: ingress
workloads:
  - name: high
    label_matcher: {match_labels: {http.request.header.x_priority: high}}
    priority: 100
  - name: low
    label_matcher: {match_labels: {http.request.header.x_priority: low}}
    priority: 10
`

// TestFluxMeterLoopGoodputMatchesRealPlant runs the flux-meter loop the
// blueprint generates for test/protect against the simulator's models of
// test/protect's plants (circuit/sim/testdata/protect*-plant.yaml) and
// compares its goodput during the 3× overload (from 1 s after its onset
// to its end, % of capacity, as test/protect's summary counts it) with
// the real plants', measured with the binary built at b4edbd1 and these
// values (BENCHMARKS.md, "fluxgate sim against the flux-meter loop's real
// plant"):
//
//	go run ./test/protect -fluxgate /tmp/fmsim/fluxgate -policy fm.yaml -warm 15s -out DIR [-workers 5 -service 50ms]
//
//	3 × 10 ms, queue_timeout 50 ms (the default until 2026-12-05):
//	    2026-12-05 05:32–05:45, load average 1.9–9.3: 7.4, 9.8, 9.2, 15.2 %
//	    2026-12-04 22:20–22:36 (fm3g, fm3h): 20.1, 12.6 %
//	3 × 10 ms, queue_timeout 20 ms: 2026-12-05 05:47–05:50: 27.3, 26.9 %
//	5 × 50 ms, queue_timeout 50 ms: 2026-12-05 05:50: 43.7 %
//
// The simulator gave 15.6, 30.4 and 41.3 %; before it had the load
// scheduler's queue, the clients' timeout and the scrape, 39.9 % for
// both 3 × 10 ms rows. With the default of 20 ms (and the load
// scheduler's floor of two token intervals, which let test/protect's
// sequential warm-up through on 5 × 50 ms), binary at f1c203f, the values
// above without queue_timeout:
//
//	3 × 10 ms: 2026-12-05 06:55, load average 0.00 → 0.38: 26.9 %
//	5 × 50 ms: 2026-12-05 06:57, load average 0.29 → 0.34: 33.9 %
//
// The simulator gives 30.4 and 37.6 %. With latency_window 2s and the
// agent's tsdb.scrape_interval 250ms (the defaults since then), binary at
// d7dc95f (BENCHMARKS.md, "The flux-meter loop's latency window and TSDB
// scrape"):
//
//	5 × 50 ms: 2026-12-05 08:45, 08:51, load average 0.11–0.57: 63.3, 64.1 %;
//	    09:20 (binary at 6f2b70e, the defaults, no flags): 61.8 %
//	3 × 10 ms: 2026-12-05 08:42–08:58: 34.7, 32.5, 33.7 %; 09:19: 39.1 %
//
// The simulator gives 67.5 % and 48.8 %; only the first is anchored.
func TestFluxMeterLoopGoodputMatchesRealPlant(t *testing.T) {
	b, _ := Lookup("service-protection")
	for _, c := range []struct {
		name, plant  string
		queueTimeout string // "" for the default
		// newWindow: the blueprint's latency_window (2 s) over samples
		// appended every 250 ms; false: 5 s over the plant file's 1 s
		// scrapes, as the runs before 2026-12-05 09:00.
		newWindow bool
		lo, hi    float64
		gaveUp    bool // want clients to give up at the onset
	}{
		// Every 50 ms run on 3 × 10 ms but one had clients give up at
		// the onset (642–1570 flows): admission was cut 2 s late,
		// behind a backlog of seconds. (The other rows' runs had 0–211
		// and 0; the 5 × 50 ms backlog peaked at 4.7 s there, and at
		// just over 5 s here.)
		{"3x10ms-queue-50ms", "protect-plant.yaml", "50ms", false, 7, 21, true},
		{"3x10ms", "protect-plant.yaml", "", false, 22, 32, false}, // the default, 20 ms
		{"5x50ms-queue-50ms", "protect-slow-plant.yaml", "50ms", false, 38, 49, false},
		{"5x50ms", "protect-slow-plant.yaml", "", false, 29, 39, false}, // the default, 20 ms
		// The defaults since 2026-12-05: latency_window 2s, the agent's
		// tsdb.scrape_interval 250ms. (On 3 × 10 ms the simulator gives
		// 48.8 % where the real plant gave 32.5–39.1 %: not anchored.)
		{"5x50ms-window-2s-scrape-250ms", "protect-slow-plant.yaml", "", true, 57, 70, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			values := protectFluxMeterValues
			if !c.newWindow {
				// The runs above had the 5 s window of the time.
				values += "latency_window: 5s\n"
			}
			if c.queueTimeout != "" {
				values = strings.ReplaceAll(values, "    priority: 10", "    queue_timeout: "+c.queueTimeout+"\n    priority: 10")
			}
			out, err := b.Generate("values.yaml", []byte(values))
			if err != nil {
				t.Fatal(err)
			}
			plantFile := "../circuit/sim/testdata/" + c.plant
			data, err := os.ReadFile(plantFile)
			if err != nil {
				t.Fatal(err)
			}
			plant, err := sim.ParsePlant(plantFile, data)
			if err != nil {
				t.Fatal(err)
			}
			if c.newWindow {
				plant.Window, plant.ScrapeInterval = 2*time.Second, 250*time.Millisecond
			} else {
				plant.Window = 5 * time.Second
			}
			tab, err := sim.Closed(out.Policy, plant)
			if err != nil {
				t.Fatal(err)
			}
			good, timeouts := tab.Column("plant.goodput_rps"), tab.Column("plant.timeout_rps")
			if good == nil || timeouts == nil {
				t.Fatalf("no plant.goodput_rps or plant.timeout_rps column in %v", tab.Columns)
			}
			var sum, gaveUp float64
			for i := 16; i < 60; i++ { // the overload holds from 15 s to 60 s
				sum += good[i]
			}
			for _, v := range timeouts[15:25] {
				gaveUp += v
			}
			goodput := 100 * sum / 44 / plant.Capacity
			t.Logf("goodput in the overload from +1 s: %.1f%% of capacity; %.0f flows given up after the onset", goodput, gaveUp)
			if goodput < c.lo || goodput > c.hi {
				t.Errorf("goodput %.1f%% of capacity, want within %.0f–%.0f%% as the real runs", goodput, c.lo, c.hi)
			}
			if c.gaveUp && gaveUp == 0 {
				t.Errorf("no flow given up after the onset; the real runs' backlog reached their clients' 5 s")
			}
		})
	}
}

// TestRateLimitingDynamicFill replays query results through the
// signal-driven rate limiter: clamped to [min, max], the static fill amount
// while the query has no value, capacity = fill × burst_factor.
func TestRateLimitingDynamicFill(t *testing.T) {
	b, _ := Lookup("rate-limiting")
	values := strings.Replace(string(b.Values()), "enabled: false", "enabled: true", 1)
	out, err := b.Generate("values.yaml", []byte(values))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := sim.Recorded(out.Policy, []map[string]float64{
		{"FILL_QUERY": 500}, {"FILL_QUERY": 5000}, {"FILL_QUERY": 0}, {},
	})
	if err != nil {
		t.Fatal(err)
	}
	fill, capacity := tab.Column("5.fill_amount"), tab.Column("5.bucket_capacity")
	wantFill := []float64{500, 1000, 1, 10}
	for i, w := range wantFill {
		if fill[i] != w || capacity[i] != 2*w {
			t.Errorf("tick %d: fill %v, capacity %v; want %v, %v", i, fill[i], capacity[i], w, 2*w)
		}
	}
}

// TestCanaryRolloutSteps replays a canary error ratio through the
// canary-rollout circuit: the weight steps 5 → 10 → 25 every 5m while the
// ratio passes (0, no errors, passes), holds while the query has no data
// (fewer than min_samples), goes to 0 at the first analysis above
// max_error_rate, and stays 0 after the ratio recovers. VERDICT follows:
// 1 passing, 0 holding, -1 rolled back.
func TestCanaryRolloutSteps(t *testing.T) {
	b, _ := Lookup("canary-rollout")
	out := generateExample(t, b)
	var ticks []map[string]float64
	add := func(n int, ratio float64, valid bool) {
		for range n {
			if valid {
				ticks = append(ticks, map[string]float64{"ERROR_RATIO": ratio, "GATEWAY_FAIL": 0})
			} else {
				ticks = append(ticks, map[string]float64{"GATEWAY_FAIL": 0})
			}
		}
	}
	add(350, 0, true)    // ticks 0..349: no errors
	add(350, 0.01, true) // 350..699: healthy
	add(300, 0, false)   // 700..999: no data
	add(40, 0.2, true)   // 1000..1039: failing
	add(60, 0.01, true)  // 1040..1099: healthy again
	tab, err := sim.Recorded(out.Policy, ticks)
	if err != nil {
		t.Fatal(err)
	}
	w, v := tab.Column("CANARY_WEIGHT"), tab.Column("VERDICT")
	if w == nil || v == nil {
		t.Fatalf("no CANARY_WEIGHT or VERDICT column in %v", tab.Columns)
	}
	for _, c := range []struct {
		tick          int
		want, verdict float64
	}{
		{0, 5, 1}, {250, 5, 1}, {350, 10, 1}, {650, 25, 1}, // stepping while passing
		{999, 25, 0},                 // no data: the rollout holds (it would be at 50 by now)
		{1000, 0, -1}, {1099, 0, -1}, // failing: rolled back at once, and it stays back
	} {
		if w[c.tick] != c.want || v[c.tick] != c.verdict {
			t.Errorf("tick %d: canary weight %v, verdict %v; want %v, %v", c.tick, w[c.tick], v[c.tick], c.want, c.verdict)
		}
	}
}

// TestCanaryRolloutGatewayFail: a fail from the gateway's own judge rolls
// the rollout back as a breach of the analysis does.
func TestCanaryRolloutGatewayFail(t *testing.T) {
	b, _ := Lookup("canary-rollout")
	out := generateExample(t, b)
	var ticks []map[string]float64
	for i := range 20 {
		fail := 0.0
		if i >= 10 {
			fail = 1
		}
		ticks = append(ticks, map[string]float64{"ERROR_RATIO": 0, "GATEWAY_FAIL": fail})
	}
	tab, err := sim.Recorded(out.Policy, ticks)
	if err != nil {
		t.Fatal(err)
	}
	w, v := tab.Column("CANARY_WEIGHT"), tab.Column("VERDICT")
	if w[9] != 5 || v[9] != 1 || w[10] != 0 || v[10] != -1 || w[19] != 0 {
		t.Errorf("weights %v, verdicts %v: want 5 and 1 until tick 9, 0 and -1 from tick 10", w, v)
	}
}
