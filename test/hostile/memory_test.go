package hostile

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// perUserPolicy keys one rate limiter on the label user (checks over
// gRPC, control point ingress) and one on the X-User header (nginx
// auth_request checks, control point authreq).
const perUserPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-user, namespace: hostile}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 10}}
              fill_amount: {constant_signal: {value: 10}}
            parameters: {limit_by_label_key: user, interval: 60s}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: authreq}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 10}}
              fill_amount: {constant_signal: {value: 10}}
            parameters: {limit_by_label_key: http.request.header.x_user, interval: 60s}
`

// Memory budget of each rate limiter in the test, and what the agent may
// add to its resident set: under the unique keys, the budget of their
// limiter, plus the garbage collector's slack (it lets the heap grow to
// twice what is live), plus gRPC buffers of 8 clients; over the whole
// attack, which adds 1 MB headers read whole by net/http, 96 MiB. Without
// the budget, 300,000 keys of 200 bytes alone hold about 100 MB of keys
// and buckets (issue 14: 4.2 M keys took RSS from 52 to 767 MB; 300 × 1
// MB keys added 450 MB).
const (
	budgetMiB   = 4
	keysGrowMiB = 40
	rssGrowMiB  = 96
	metricsGrow = 64 << 10 // bytes /metrics may grow by under 100 long control point names
)

// Many unique rate-limit keys, 1 MB keys, 1 MB label values and 100
// control point names of 1 MB: the buckets stay within
// limits.rate_limiter_memory_mib, the least recently used are evicted,
// and neither the agent's RSS nor /metrics grows with what clients send.
func TestUniqueKeysStayInBudget(t *testing.T) {
	t.Parallel() // with TestQuotaHoldsAcrossSweeps, which mostly waits
	p := start(t, spec{
		extra:    fmt.Sprintf("limits: {rate_limiter_memory_mib: %d}\n", budgetMiB),
		policies: map[string]string{"per-user.yaml": perUserPolicy},
	})
	ctx := t.Context()
	const workers = 8
	clients := make([]pb.FlowControlServiceClient, workers)
	for i := range clients {
		clients[i] = p.checkClient(t)
	}
	// Warm up the connections and the agent, then take the baseline.
	for i := range 2000 {
		if _, err := clients[i%workers].Check(ctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "warm"}}); err != nil {
			t.Fatalf("warm-up check: %v", err)
		}
	}
	time.Sleep(time.Second)
	before := p.rssMiB(t)
	mxBefore := p.scrape(t)
	t.Logf("baseline: RSS %.1f MiB, /metrics %d bytes", before, len(mxBefore))
	peak := p.samplePeak(t)

	// 1. Unique keys of 200 bytes (under ratelimit.MaxKeyBytes: kept
	// as they are, not hashed), from several clients at once.
	keys := pick(300_000, 2_000_000)
	start := time.Now()
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	pad := strings.Repeat("u", 180)
	for _, c := range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(keys) {
					return
				}
				_, err := c.Check(ctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": fmt.Sprintf("%s%020d", pad, i)}})
				if err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("check %d: %v", i, err)
					}
				}
			}
		})
	}
	wg.Wait()
	p.alive(t)
	took := time.Since(start)
	keysPeak := max(peak.end(), p.peakMiB(t)) // VmHWM: the kernel's peak, which sampling may miss
	mx := p.scrape(t)
	t.Logf("unique keys: %d checks in %v (%.0f/s), %d failed; RSS %.1f MiB, phase peak %.1f MiB",
		keys, took.Round(time.Millisecond), float64(keys)/took.Seconds(), failed.Load(), p.rssMiB(t), keysPeak)
	checkBuckets(t, mx, keys)
	if keysPeak-before > keysGrowMiB {
		t.Errorf("RSS peaked at %.1f MiB under %d unique keys, %.1f MiB over the %.1f MiB baseline; want at most %d MiB more",
			keysPeak, keys, keysPeak-before, before, keysGrowMiB)
	}
	peak = p.samplePeak(t)

	// 2. Keys of 1 MB: 300 auth_request checks, each with a new X-User
	// header of 1,000,000 bytes (net/http's header limit is 1 MiB).
	// The bucket is kept under a hash; the key never is.
	hc := &http.Client{Timeout: time.Minute}
	big := pick(300, 1000)
	statuses := sendParallel(t, 4, big, func(i int) (int, error) {
		user := fmt.Sprintf("%08d", i) + strings.Repeat("k", 1_000_000-8)
		code, _, err := httpDo(ctx, hc, http.MethodGet, "http://"+p.api+"/v1/check/http", nil,
			map[string]string{"X-Original-URI": "/", "X-FluxGate-Control-Point": "authreq", "X-User": user})
		return code, err
	})
	t.Logf("1 MB keys: %d auth_request checks answered %v; RSS %.1f MiB", big, statuses, p.rssMiB(t))
	if statuses[http.StatusOK] != big {
		t.Errorf("1 MB keys: answers %v, want %d × 200 (each a new, full bucket)", statuses, big)
	}

	// 3. Label values of 1 MB over gRPC: refused (at most 16 KiB).
	refused := 0
	for i := range pick(100, 300) {
		v := fmt.Sprintf("%08d", i) + strings.Repeat("v", 1_000_000-8)
		_, err := clients[i%workers].Check(ctx, &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": v}})
		if status.Code(err) == codes.InvalidArgument {
			refused++
		} else {
			t.Errorf("a 1 MB label value: %v, want InvalidArgument", err)
			break
		}
	}
	t.Logf("1 MB label values over gRPC: %d refused with InvalidArgument", refused)

	// 4. 100 control point names of 1 MB: refused over gRPC; counted
	// under __other__ when they come by auth_request, whose header
	// names the control point.
	names := 100
	for i := range names {
		cp := fmt.Sprintf("%08d", i) + strings.Repeat("c", 1_000_000-8)
		_, err := clients[i%workers].Check(ctx, &pb.CheckRequest{ControlPoint: cp})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("a control point name of 1 MB over gRPC: %v, want InvalidArgument", err)
		}
	}
	statuses = sendParallel(t, 4, names, func(i int) (int, error) {
		cp := fmt.Sprintf("%08d", i) + strings.Repeat("c", 1_000_000-8)
		code, _, err := httpDo(ctx, hc, http.MethodGet, "http://"+p.api+"/v1/check/http", nil,
			map[string]string{"X-Original-URI": "/", "X-FluxGate-Control-Point": cp})
		return code, err
	})
	if statuses[http.StatusOK] != names {
		t.Errorf("long control point names by auth_request: answers %v, want %d × 200", statuses, names)
	}
	p.alive(t)
	mxAfter := p.scrape(t)
	after, hwm := p.rssMiB(t), p.peakMiB(t)
	phasePeak := max(keysPeak, peak.end(), hwm)
	t.Logf("after: RSS %.1f MiB, peak during the attack %.1f MiB (VmHWM %.1f MiB), /metrics %d bytes (was %d)",
		after, phasePeak, hwm, len(mxAfter), len(mxBefore))
	checkBuckets(t, mxAfter, keys)
	if grow := len(mxAfter) - len(mxBefore); grow > metricsGrow {
		t.Errorf("/metrics grew by %d bytes under %d long control point names, want at most %d", grow, names, metricsGrow)
	}
	if !bytes.Contains(mxAfter, []byte(`control_point="__other__"`)) {
		t.Errorf("/metrics has no control_point=\"__other__\" after %d long control point names", names)
	}
	for _, line := range bytes.Split(mxAfter, []byte("\n")) {
		if len(line) > 4096 {
			t.Errorf("/metrics has a line of %d bytes: %.120s…", len(line), line)
			break
		}
	}
	if phasePeak-before > rssGrowMiB {
		t.Errorf("RSS peaked at %.1f MiB during the attack, %.1f MiB over the %.1f MiB baseline; want at most %d MiB more",
			phasePeak, phasePeak-before, before, rssGrowMiB)
	}
}

// checkBuckets asserts that each rate limiter of the scrape holds at
// most its budget, and that the per-user limiter evicted what did not
// fit.
func checkBuckets(t *testing.T, mx []byte, keys int) {
	t.Helper()
	const budget = budgetMiB << 20
	const ratelimitBucketBytes = 96 // ratelimit.BucketBytes
	for _, s := range series(mx, "fluxgate_ratelimiter_bucket_bytes") {
		if s.v > budget {
			t.Errorf("fluxgate_ratelimiter_bucket_bytes{%s} = %.0f, over the budget of %d", s.labels, s.v, budget)
		}
	}
	buckets := metric(mx, "fluxgate_ratelimiter_buckets", `policy_name="per-user"`)
	evictions := metric(mx, "fluxgate_ratelimiter_evictions_total", `policy_name="per-user"`)
	t.Logf("per-user limiters: %.0f buckets, %.0f bytes, %.0f evictions", buckets,
		metric(mx, "fluxgate_ratelimiter_bucket_bytes", `policy_name="per-user"`), evictions)
	if buckets > 2*budget/ratelimitBucketBytes {
		t.Errorf("%.0f buckets, more than 2 × %d fit the budgets", buckets, budget/ratelimitBucketBytes)
	}
	if min := float64(keys - budget/ratelimitBucketBytes); evictions < min {
		t.Errorf("%.0f evictions after %d new keys, want at least %.0f (the keys that did not fit the budget)", evictions, keys, min)
	}
}

type sample struct {
	labels string
	v      float64
}

// series returns every sample of name.
func series(body []byte, name string) []sample {
	var out []sample
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscan(line[sp+1:], &v); err != nil {
			continue
		}
		out = append(out, sample{labels: line[len(name):sp], v: v})
	}
	return out
}

// sendParallel runs send(0..n-1) from workers goroutines and counts the
// statuses; an error without a status counts as 0 and fails the test.
func sendParallel(t *testing.T, workers, n int, send func(i int) (int, error)) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				code, err := send(i)
				if err != nil && code == 0 {
					t.Errorf("request %d: %v", i, err)
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return statuses
}
