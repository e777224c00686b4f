//go:build linux

package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// workloads keeps the workload durations of the flows a gateway records.
type workloads struct {
	mu sync.Mutex
	ms []float64 // guarded by mu
}

func (w *workloads) Observe(r flow.Record) {
	w.mu.Lock()
	w.ms = append(w.ms, r.WorkloadMillis)
	w.mu.Unlock()
}

// The loop engine's control point reads no clock of its own (issue 20,
// item 5): each check is asked at the wake's reading (TryCheckAt, never
// TryCheck), the flow ends at a later wake's (EndFlowAt), and the flow's
// record and the request's duration are both that end less that check,
// to the nanosecond: the gate took the loop's times, not readings of its
// own. Every time lies between the client's readings around the request.
func TestLoopGateTakesTheLoopsClock(t *testing.T) {
	e := allocEngine(t, allocFullPolicy)
	ck := &countingChecker{LocalChecker: controlpoint.NewLocalChecker(e)}
	var seen workloads
	reg := prometheus.NewRegistry()
	up, _ := pathTarget(t)
	cfg := oneUpstream(up)
	cfg.Routes[0].ControlPoint = "ingress"
	addr, _ := loopTo(t, Options{Config: cfg, Checker: ck, Flows: &seen, Registerer: reg}, nil)
	c, br := dialLean(t, addr)
	const n = 5
	var before, after [n]time.Time
	for i := range n {
		before[i] = time.Now()
		resp := aliceGet(t, c, br, i)
		if resp.StatusCode != http.StatusOK || resp.Header.Get(flow.HeaderDecision) != "accepted" {
			t.Fatalf("request %d: %d %v; want 200 accepted", i, resp.StatusCode, resp.Header)
		}
		waitUntil(t, "the flow's end", func() bool {
			ck.mu.Lock()
			defer ck.mu.Unlock()
			return len(ck.flowEndsAt) == i+1
		})
		after[i] = time.Now()
	}
	checks, ends, recorded := clockReadings(t, ck, &seen, n, "off the loop")
	var sum float64
	for i := range n {
		if checks[i].Before(before[i]) || ends[i].Before(checks[i]) || after[i].Before(ends[i]) {
			t.Errorf("request %d: checked at %v and ended at %v, not in order between %v and %v", i, checks[i], ends[i], before[i], after[i])
		}
		d := ends[i].Sub(checks[i])
		if want := float64(d) / 1e6; recorded[i] != want {
			t.Errorf("request %d: flow recorded with a workload of %v ms; want %v, its end less its check", i, recorded[i], want)
		}
		sum += d.Seconds()
	}
	h := metricOf(t, reg, "fluxgate_http_request_duration_seconds").GetHistogram()
	if h.GetSampleCount() != n || h.GetSampleSum() != sum {
		t.Errorf("request durations: %d summing to %vs; want %d summing to %vs, the flows' ends less their checks", h.GetSampleCount(), h.GetSampleSum(), n, sum)
	}
}

// clockReadings returns when the n checks and flow ends ck saw were, and
// the workloads seen recorded, n of each, none of the checks at the
// checker's own clock or made by Check (in the words of how, where they
// should not have been).
func clockReadings(t *testing.T, ck *countingChecker, seen *workloads, n int, how string) (checks, ends []time.Time, recorded []float64) {
	t.Helper()
	if own, checked := ck.ownClock.Load(), ck.checked.Load(); own != 0 || checked != 0 {
		t.Fatalf("%d checks at the checker's own clock and %d %s; want none", own, checked, how)
	}
	ck.mu.Lock()
	checks, ends = ck.checksAt, ck.flowEndsAt
	ck.mu.Unlock()
	seen.mu.Lock()
	recorded = seen.ms
	seen.mu.Unlock()
	if len(checks) != n || len(ends) != n || len(recorded) != n {
		t.Fatalf("%d checks, %d flow ends, %d flows recorded; want %d each", len(checks), len(ends), len(recorded), n)
	}
	return checks, ends, recorded
}

// aliceGet asks GET /r<i> for the user alice on c, a raw HTTP/1.1
// connection read through br, and returns the answer with its body read.
func aliceGet(t *testing.T, c io.Writer, br *bufio.Reader, i int) *http.Response {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET /r%d HTTP/1.1\r\nHost: h\r\nX-User: alice\r\n\r\n", i); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}
