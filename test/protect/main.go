// Command protect measures what a user gets from FluxGate's service
// protection on a real plant: an upstream with a hard capacity (-workers
// workers, each busy -service per request, behind an unbounded FIFO
// queue), `fluxgate gateway` in front of it with a policy (by default the
// service-protection blueprint at its defaults), and an open-loop driver
// that offers a multiple of the measured capacity: -base × capacity for
// -warm, -overload × capacity for -hold, -base again for -cool.
//
// It first measures the upstream alone (closed loop with 4 × workers
// clients for the capacity, one sequential client for the no-load
// latency), expresses every target relative to that, and writes into -out
// a per-second CSV (seconds.csv), a summary (summary.txt, summary.json)
// and a plot (plot.png). See README.md beside this file for the columns
// and the targets.
//
//	go run ./test/protect                                # 3× overload, service-protection
//	go run ./test/protect -overload 5
//	go run ./test/protect -policy none                   # the plain proxy, for reference
//	go run ./test/protect -workers 5 -service 50ms       # a slower plant, ~100 req/s
//
// Everything binds to 127.0.0.1, the run is bounded in time, and the
// gateway child is stopped on exit, error or Ctrl-C (and dies with this
// process: Pdeathsig). The exit status is 0 whatever the targets say,
// unless -strict.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var (
	workers     = flag.Int("workers", 3, "upstream workers (requests served at once)")
	service     = flag.Duration("service", 10*time.Millisecond, "upstream service time of one request")
	policyFlag  = flag.String("policy", "service-protection", "none (plain proxy), service-protection (the blueprint at its defaults, two priority workloads), or a path to a policy file or to a service-protection values file")
	frontFlag   = flag.String("front", "gateway", "what the driver sends to: gateway (fluxgate gateway) or nginx (examples/nginx/fluxgate.conf, auth_request to fluxgate agent)")
	nginxConf   = flag.String("nginx-conf", "examples/nginx/fluxgate.conf", "the nginx configuration of -front nginx (its agent, upstream and listen addresses are replaced)")
	binFlag     = flag.String("fluxgate", "", "fluxgate binary; empty builds ./cmd/fluxgate (run from the repository root)")
	base        = flag.Float64("base", 0.5, "offered load outside the overload, × measured capacity")
	overload    = flag.Float64("overload", 3, "offered load during the overload, × measured capacity")
	warm        = flag.Duration("warm", 10*time.Second, "length of the first base phase")
	hold        = flag.Duration("hold", 45*time.Second, "length of the overload phase")
	cool        = flag.Duration("cool", 15*time.Second, "length of the last base phase")
	arrivals    = flag.String("arrivals", "uniform", "arrival schedule: uniform (evenly spaced) or poisson")
	highShare   = flag.Float64("high", 0.2, "share of requests sent with X-Priority: high (the rest: low)")
	conns       = flag.Int("conns", 2000, "driver connections, so the most requests in flight at once")
	timeout     = flag.Duration("timeout", 5*time.Second, "client timeout, counted from each request's intended send time")
	goodFlag    = flag.Duration("good", 0, "latency bound of goodput; 0 means 5 × the no-load p50, at least 5ms")
	outFlag     = flag.String("out", "", "output directory; empty makes a temporary one (printed at the end)")
	strict      = flag.Bool("strict", false, "exit 1 when a target fails")
	seed        = flag.Uint64("seed", 1, "seed of the arrival schedule and of the priorities")
	capDuration = flag.Duration("capacity-time", 2*time.Second, "length of the closed-loop capacity measurement")
	tsdbScrape  = flag.Duration("tsdb-scrape", 0, "the agent's tsdb.scrape_interval (how often it appends its own metrics for circuits); 0 keeps the agent's default")
)

func main() {
	flag.Parse()
	log.SetFlags(log.Ltime)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sum, err := run(ctx)
	stop()
	if err != nil {
		log.Printf("protect: %v", err)
		os.Exit(1)
	}
	if *strict && !sum.allPass() {
		os.Exit(1)
	}
}

// loadavg is the 1-minute load average of the machine: the harness shares
// it, and a busy machine shows in every number.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func checkFlags() error {
	switch {
	case *workers < 1 || *service <= 0:
		return errors.New("-workers and -service must be positive")
	case *base <= 0 || *overload <= 0:
		return errors.New("-base and -overload must be positive")
	case *warm < time.Second || *hold < 6*time.Second || *cool < 3*time.Second:
		return errors.New("-warm must be at least 1s, -hold at least 6s, -cool at least 3s")
	case *arrivals != "uniform" && *arrivals != "poisson":
		return fmt.Errorf("-arrivals %q: want uniform or poisson", *arrivals)
	case *highShare < 0 || *highShare > 1:
		return errors.New("-high must be within 0..1")
	case *conns < 1 || *timeout <= 0:
		return errors.New("-conns and -timeout must be positive")
	case *tsdbScrape < 0:
		return errors.New("-tsdb-scrape must not be negative")
	case *frontFlag != "gateway" && *frontFlag != "nginx":
		return fmt.Errorf("-front %q: want gateway or nginx", *frontFlag)
	}
	return nil
}

func run(ctx context.Context) (*summary, error) {
	if err := checkFlags(); err != nil {
		return nil, err
	}
	out := *outFlag
	if out == "" {
		d, err := os.MkdirTemp("", "fluxgate-protect-")
		if err != nil {
			return nil, err
		}
		out = d
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	// The whole run is bounded: measurement, start-up, the phases, the
	// last requests' timeout and some slack.
	limit := *capDuration + 10*time.Second + 90*time.Second + *warm + *hold + *cool + *timeout + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	up, err := startUpstream(*workers, *service)
	if err != nil {
		return nil, err
	}
	defer up.close()
	log.Printf("upstream %s: %d workers × %s (nominal %.0f req/s)", up.addr, *workers, *service, up.nominal())
	capa, err := measureCapacity(ctx, up.addr, 4**workers, *capDuration)
	if err != nil {
		return nil, err
	}
	log.Printf("measured capacity %.1f req/s, no-load latency p50 %.2f ms p99 %.2f ms", capa.rps, ms(capa.p50), ms(capa.p99))
	good := *goodFlag
	if good <= 0 {
		good = max(5*capa.p50, 5*time.Millisecond)
	}

	tmp, err := os.MkdirTemp("", "fluxgate-protect-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := *binFlag
	if bin == "" {
		bin = filepath.Join(tmp, "fluxgate")
		if err := buildFluxgate(ctx, bin); err != nil {
			return nil, err
		}
	}
	gw, err := startGateway(ctx, bin, filepath.Join(out, "gateway"), up.addr, *policyFlag, *frontFlag)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	log.Printf("%s %s (agent API %s), policy %s", *frontFlag, gw.addr, gw.api, gw.policyDesc)
	viaGW, err := gw.warmUp(ctx)
	if err != nil {
		return nil, fmt.Errorf("warm-up through the gateway: %w", err)
	}
	log.Printf("no-load latency through the gateway p50 %.2f ms p99 %.2f ms", ms(quantile(viaGW, 0.5)), ms(quantile(viaGW, 0.99)))

	plan := phasesFromFlags(capa.rps)
	sched := newSchedule(plan, *arrivals, *highShare, *seed)
	log.Printf("driving %d requests over %s: %.0f req/s, then %.0f req/s, then %.0f req/s (%s arrivals, %.0f%% high priority)",
		len(sched.at), plan.total(), plan[0].rate, plan[1].rate, plan[2].rate, *arrivals, 100**highShare)
	loadBefore := loadavg()
	cpuBefore := gw.cpu()
	start := time.Now().Add(100 * time.Millisecond)
	sig := gw.pollSignals(ctx, start)
	res, err := drive(ctx, gw.addr, sched, start, *conns, *timeout, plan, sig.line)
	sig.stop()
	cpuUsed := gw.cpu() - cpuBefore
	if err != nil {
		return nil, err
	}
	secs := perSecond(sched, res, plan, good, sig.readings())
	sum := summarize(secs, plan, capa, good, res, sig.readings())
	sum.Workers, sum.Service, sum.Policy, sum.Arrivals, sum.High = *workers, service.String(), gw.policyDesc, *arrivals, *highShare
	sum.Front = *frontFlag
	sum.GatewayP50ms, sum.GatewayP99ms = ms(quantile(viaGW, 0.5)), ms(quantile(viaGW, 0.99))
	sum.LoadAvg = loadBefore + " → " + loadavg()
	sum.TSDBScrape = "default"
	if *tsdbScrape > 0 {
		sum.TSDBScrape = tsdbScrape.String()
	}
	if cpuBefore >= 0 && cpuUsed >= 0 {
		sum.AgentCPUs = cpuUsed.Seconds()
	}
	if err := writeOutputs(out, secs, sum); err != nil {
		return nil, err
	}
	fmt.Print(sum.text())
	fmt.Printf("\nper-second CSV, summary and plot in %s\n", out)
	return sum, nil
}
