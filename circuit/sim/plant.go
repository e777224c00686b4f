package sim

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Plant is a service model: capacity × base_latency workers (at least
// one), each request taking workers / capacity, behind one unbounded
// first-in-first-out queue; clients that send open loop, evenly spaced,
// and give up Timeout after each request's intended send time. Closed
// plays it flow by flow against a policy (flows.go): the policy's load
// schedulers queue flows as the agent's do, and the circuit learns what a
// flux meter and a scraped TSDB would tell it — a flow's latency from its
// admission to its end, known when it ends; counters sampled every
// ScrapeInterval; rates over the samples of the last Window.
type Plant struct {
	// Capacity is the requests per second the service completes. Required.
	Capacity float64 `yaml:"capacity"`
	// BaseLatency is the latency without queueing. Default 20ms.
	BaseLatency time.Duration `yaml:"base_latency,omitempty"`
	// Duration of the run. Default 60s.
	Duration time.Duration `yaml:"duration,omitempty"`
	// Window is the rate window of the circuit's queries (the plant's, not
	// read from the policy's query strings: set it to the policy's, such
	// as the service-protection blueprint's latency_window, 2s by
	// default since 2026-12-05). Default 5s.
	Window time.Duration `yaml:"window,omitempty"`
	// ScrapeInterval is how often the counters are sampled (the agent's
	// tsdb.scrape_interval, 250ms by default since 2026-12-05). Default 1s,
	// the agent's until then, which the plant files here model.
	ScrapeInterval time.Duration `yaml:"scrape_interval,omitempty"`
	// ScrapeOffset is when, after each tick, the counters are sampled:
	// a query at a tick reads the samples up to that tick, so the newest
	// is ScrapeInterval − ScrapeOffset old. The agent starts its scrape
	// and its circuits' ticks at about the same time, in no set order.
	// Default: half the ScrapeInterval.
	ScrapeOffset time.Duration `yaml:"scrape_offset,omitempty"`
	// Timeout is how long a client waits for its answer, from the
	// request's intended send time; the service still serves a request
	// whose client has gone. Default 5s (test/protect's driver).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// GoodLatency bounds the latency of a flow that counts as goodput
	// (goodput_rps). Default 5 × BaseLatency.
	GoodLatency time.Duration `yaml:"good_latency,omitempty"`
	// Jitter varies each request's service time by ×U(1−Jitter,
	// 1+Jitter). Default 0.
	Jitter float64 `yaml:"jitter,omitempty"`
	// Overhead is the latency the path adds to every served flow (the
	// proxy, on a machine shared with the clients) per 1,000 flows a
	// second offered, rejections included: a flux meter measures it with
	// the service's. test/protect's plant: about 3ms (its flux meter read
	// 11–12 ms at 139 req/s and 13–15 ms at 833 req/s with the service
	// idle). Default 0.
	Overhead time.Duration `yaml:"overhead_per_1000_rps,omitempty"`
	// Workloads name the load scheduler workloads the flows belong to,
	// each with its share of the flows (drawn at random with Seed); the
	// rest go to the default workload. A workload takes its priority and
	// queue_timeout from the policy's load scheduler.
	Workloads []PlantWorkload `yaml:"workloads,omitempty"`
	// Seed of the workload draw and the jitter. Default 1.
	Seed uint64 `yaml:"seed,omitempty"`
	// Load is the offered load: each step holds from its time on.
	Load []LoadStep `yaml:"load"`
	// Signals maps circuit inputs (the outputs of its query.promql
	// components) to plant outputs, each as a query over the last Window
	// of scraped samples reads it: latency_ms (the mean latency of the
	// flows that ended, from their admission), offered_rps (decisions),
	// admitted_rps, served_rps (flows that ended), peak_served_rps (the
	// most served_rps of the last minute); queue and queue_latency_ms (the
	// service's backlog now, and what a flow admitted now would take).
	Signals map[string]string `yaml:"signals"`
}

// PlantWorkload is a share of the flows in a load scheduler workload.
type PlantWorkload struct {
	Name  string  `yaml:"name"`
	Share float64 `yaml:"share"`
}

// LoadStep is the offered load from At on.
type LoadStep struct {
	At  time.Duration `yaml:"at"`
	RPS float64       `yaml:"rps"`
}

// Plant outputs a circuit can read.
var plantOutputs = []string{"offered_rps", "admitted_rps", "served_rps", "peak_served_rps", "queue", "queue_latency_ms", "latency_ms"}

// judgedOutputs are the table's last columns, for judging a run as
// test/protect does: flows counted by the tick of their intended send time
// (per second) that were served with a 2xx within GoodLatency of it,
// rejected, or given up by their client.
var judgedOutputs = []string{"goodput_rps", "rejected_rps", "timeout_rps"}

// ParsePlant decodes a plant file strictly, with positioned errors.
func ParsePlant(file string, data []byte) (*Plant, error) {
	p := &Plant{}
	if err := strictyaml.Unmarshal(file, data, p); err != nil {
		return nil, err
	}
	if errs := p.problems(); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", file, strings.Join(errs, "; "))
	}
	p.setDefaults()
	sort.SliceStable(p.Load, func(i, j int) bool { return p.Load[i].At < p.Load[j].At })
	return p, nil
}

// problems lists what is wrong with a decoded plant, sorted.
func (p *Plant) problems() []string {
	var errs []string
	if p.Capacity <= 0 {
		errs = append(errs, "capacity must be positive")
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		errs = append(errs, "jitter must be within 0..1")
	}
	errs = append(errs, p.workloadProblems()...)
	if p.ScrapeInterval < 0 || p.ScrapeOffset < 0 || p.Timeout < 0 || p.Window < 0 || p.Overhead < 0 {
		errs = append(errs, "window, scrape_interval, scrape_offset, timeout and overhead_per_1000_rps must not be negative")
	}
	if p.ScrapeInterval > 0 && p.ScrapeOffset >= p.ScrapeInterval {
		errs = append(errs, "scrape_offset must be less than scrape_interval")
	}
	if len(p.Load) == 0 {
		errs = append(errs, "load needs at least one step")
	}
	for name, out := range p.Signals {
		if !contains(plantOutputs, out) {
			errs = append(errs, fmt.Sprintf("signals.%s: %q is not one of %s", name, out, strings.Join(plantOutputs, ", ")))
		}
	}
	sort.Strings(errs)
	return errs
}

func (p *Plant) workloadProblems() []string {
	var errs []string
	share := 0.0
	for i, w := range p.Workloads {
		if w.Name == "" || w.Share < 0 {
			errs = append(errs, fmt.Sprintf("workloads[%d]: needs a name and a share of at least 0", i))
		}
		share += w.Share
	}
	if share > 1+1e-9 {
		errs = append(errs, "workloads: the shares add up to more than 1")
	}
	return errs
}

// setDefaults fills what the file left out.
func (p *Plant) setDefaults() {
	if p.BaseLatency == 0 {
		p.BaseLatency = 20 * time.Millisecond
	}
	if p.Duration == 0 {
		p.Duration = time.Minute
	}
	if p.Window == 0 {
		p.Window = 5 * time.Second
	}
	if p.ScrapeInterval == 0 {
		p.ScrapeInterval = time.Second
	}
	if p.ScrapeOffset == 0 {
		p.ScrapeOffset = p.ScrapeInterval / 2
	}
	if p.Timeout == 0 {
		p.Timeout = 5 * time.Second
	}
	if p.Seed == 0 {
		p.Seed = 1
	}
	if p.GoodLatency == 0 {
		p.GoodLatency = 5 * p.BaseLatency
	}
}

// Phases is the load as consecutive phases of constant offered load up to
// Duration.
func (p *Plant) Phases() []LoadStep {
	var out []LoadStep
	for i, s := range p.Load {
		if s.At >= p.Duration {
			break
		}
		if i == 0 && s.At > 0 {
			out = append(out, LoadStep{At: 0})
		}
		out = append(out, s)
	}
	return out
}

func (p *Plant) offered(at time.Duration) float64 {
	rps := 0.0
	for _, s := range p.Load {
		if s.At <= at {
			rps = s.RPS
		}
	}
	return rps
}

// Closed runs pol's circuit against the plant, flow by flow (see Plant):
// each tick the circuit reads the plant as its queries would, and its
// actuator inputs decide what the plant admits until the next tick. The
// table has a row per tick: the circuit's signals and actuator inputs,
// the plant's outputs as the circuit read them that tick
// ("plant.latency_ms", ...), then the judging columns ("plant.goodput_rps",
// "plant.rejected_rps", "plant.timeout_rps").
func Closed(pol *policies.Policy, plant *Plant) (*Table, error) {
	m, err := prepare(pol)
	if err != nil {
		return nil, err
	}
	for _, in := range m.inputs {
		if _, ok := plant.Signals[in]; !ok {
			return nil, fmt.Errorf("sim: the circuit reads %q (a query.promql output) but the plant's signals do not map it", in)
		}
	}
	raw := newFlowRun(pol, plant, m).run()
	return m.table(raw, prefixed("plant.", append(append([]string{}, plantOutputs...), judgedOutputs...))), nil
}

func prefixed(pre string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = pre + x
	}
	return out
}

// admitFraction is the share of offered flows the samplers let through.
func admitFraction(acts map[string]float64) float64 {
	f := 1.0
	for k, v := range acts {
		if math.IsNaN(v) {
			continue // an invalid input: the actuator passes everything
		}
		if strings.HasSuffix(k, ".accept_percentage") {
			f *= math.Max(0, math.Min(100, v)) / 100
		}
	}
	return f
}

// rateLimit is the tightest rate (per second) the rate limiters allow.
func rateLimit(pol *policies.Policy, acts map[string]float64) float64 {
	lim := math.Inf(1)
	for k, v := range acts {
		idx, port, ok := strings.Cut(k, ".")
		if !ok || port != "fill_amount" || math.IsNaN(v) {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i >= len(pol.Spec.Circuit.Components) {
			continue
		}
		if rl, ok := pol.Spec.Circuit.Components[i].Spec.(*policies.RateLimiter); ok && rl.Parameters.Interval > 0 {
			lim = math.Min(lim, v/rl.Parameters.Interval.Seconds())
		}
	}
	return lim
}
