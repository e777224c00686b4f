package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Headers of the gateway's own answers (headerDecision and
// HeaderReason; written out here so that the harness builds while those
// packages change).
const (
	headerDecision = "X-FluxGate-Decision" // accepted | rejected
	headerReason   = "X-FluxGate-Reason"   // no_tokens, rate_limited, upstream_timeout, ...
)

// phase is one stretch of constant offered load.
type phase struct {
	name     string
	rate     float64 // requests/s
	from, to time.Duration
}

type plan []phase

func phasesFromFlags(capRPS float64) plan {
	return plan{
		{name: "base", rate: *base * capRPS, from: 0, to: *warm},
		{name: "overload", rate: *overload * capRPS, from: *warm, to: *warm + *hold},
		{name: "cool", rate: *base * capRPS, from: *warm + *hold, to: *warm + *hold + *cool},
	}
}

func (p plan) total() time.Duration { return p[len(p)-1].to }

// at returns the index of the phase that holds t (the last one past it).
func (p plan) at(t time.Duration) int {
	for i, ph := range p {
		if t < ph.to {
			return i
		}
	}
	return len(p) - 1
}

// schedule is every request's intended send time (from the start of the
// run) and priority, fixed before the run.
type schedule struct {
	at   []time.Duration
	high []bool
}

// newSchedule spaces each phase's requests evenly (uniform) or as a
// Poisson process (poisson), and marks a share high of them high
// priority at random.
func newSchedule(p plan, arrivals string, high float64, seed uint64) *schedule {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &schedule{}
	for _, ph := range p {
		if ph.rate <= 0 {
			continue
		}
		gap := float64(time.Second) / ph.rate
		for t := float64(ph.from); t < float64(ph.to); {
			s.at = append(s.at, time.Duration(t))
			s.high = append(s.high, rng.Float64() < high)
			if arrivals == "poisson" {
				t += rng.ExpFloat64() * gap
			} else {
				t += gap
			}
		}
	}
	return s
}

// outcome is what became of one request.
type outcome uint8

const (
	outNone     outcome = iota // not sent: the run was interrupted
	outAdmitted                // answered by the upstream (any status)
	outRejected                // rejected by the policy at the control point
	outError                   // any other answer of the gateway, or a connection error
	outTimeout                 // no answer within -timeout of its intended send time
)

// gatewayReasons are the X-FluxGate-Reason values of answers the gateway
// makes when it cannot reach the upstream: errors, not admission control.
var gatewayReasons = map[string]bool{"upstream_unavailable": true, "upstream_timeout": true, "no_healthy_upstream": true, "breaker_open": true}

// results are per request, indexed like the schedule.
type results struct {
	out    []outcome
	status []uint16
	lat    []time.Duration // completion − intended send time
	late   []time.Duration // actual − intended send time (waiting for a free connection)

	maxInFlight int
	rejectedBy  map[string]int // X-FluxGate-Reason of the rejections
	errorsBy    map[string]int // what the errors were
}

// drive sends sched's requests to addr open loop, the way wrk2 does: a
// pacer on a locked OS thread sleeps with nanosleep (time.Sleep lasts at
// least a millisecond whenever the runtime waits in epoll) and hands each
// request's intended send time to one of conns workers, each with its
// own keep-alive connection. Latency counts from the intended time, so a
// request that waits for a free connection is charged for it, and a
// request whose timeout passed before a connection was free counts as a
// timeout without being sent. (test/gwbench's openLoop is the same
// pacer; this one adds phases, priorities, outcomes and deadlines.)
// Every second it logs what completed, plus extra(second).
func drive(ctx context.Context, addr string, s *schedule, start time.Time, conns int, timeout time.Duration, p plan, extra func(sec int) string) (*results, error) {
	n := len(s.at)
	r := &results{out: make([]outcome, n), status: make([]uint16, n), lat: make([]time.Duration, n), late: make([]time.Duration, n),
		rejectedBy: map[string]int{}, errorsBy: map[string]int{}}
	c := &fasthttp.HostClient{
		Addr:                     addr,
		MaxConns:                 conns + 64, // a closed connection may still count for a moment
		MaxConnWaitTimeout:       timeout,
		MaxIdleConnDuration:      time.Minute,
		NoDefaultUserAgentHeader: true,
	}
	defer c.CloseIdleConnections()
	url := "http://" + addr + "/"
	var mu sync.Mutex // guards r.rejectedBy, r.errorsBy, r.maxInFlight
	var inFlight, sent atomic.Int64
	var counts [outTimeout + 1]atomic.Int64
	due := make(chan int, n)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			for i := range due {
				if ctx.Err() != nil {
					continue // outNone
				}
				intended := start.Add(s.at[i])
				deadline := intended.Add(timeout)
				now := time.Now()
				r.late[i] = now.Sub(intended)
				if !now.Before(deadline) {
					r.out[i], r.lat[i] = outTimeout, timeout
					counts[outTimeout].Add(1)
					continue
				}
				prio := "low"
				if s.high[i] {
					prio = "high"
				}
				req.Header.Set(priorityHeader, prio)
				if f := inFlight.Add(1); f > int64(r.maxInFlight) { // racy read, checked under mu
					mu.Lock()
					r.maxInFlight = max(r.maxInFlight, int(f))
					mu.Unlock()
				}
				err := c.DoDeadline(req, resp, deadline)
				done := time.Now()
				inFlight.Add(-1)
				r.lat[i] = done.Sub(intended)
				var o outcome
				var why string
				switch {
				case err != nil && (errors.Is(err, fasthttp.ErrTimeout) || !done.Before(deadline)):
					o = outTimeout
				case err != nil:
					o, why = outError, err.Error()
				case len(resp.Header.Peek(upstreamHeader)) > 0:
					o = outAdmitted
				default:
					reason := string(resp.Header.Peek(headerReason))
					if string(resp.Header.Peek(headerDecision)) == "rejected" && !gatewayReasons[reason] {
						o, why = outRejected, fmt.Sprintf("%d %s", resp.StatusCode(), reason)
					} else {
						o, why = outError, fmt.Sprintf("%d %s", resp.StatusCode(), reason)
					}
				}
				r.out[i], r.status[i] = o, uint16(resp.StatusCode())
				counts[o].Add(1)
				if why != "" {
					mu.Lock()
					if o == outRejected {
						r.rejectedBy[why]++
					} else {
						r.errorsBy[why]++
					}
					mu.Unlock()
				}
				resp.Reset()
			}
		})
	}

	stopLive := make(chan struct{})
	liveDone := make(chan struct{})
	go func() { // the live view, one line a second
		defer close(liveDone)
		var prev [outTimeout + 1]int64
		var prevSent int64
		for sec := 1; ; sec++ {
			select {
			case <-stopLive:
				return
			case <-time.After(time.Until(start.Add(time.Duration(sec) * time.Second))):
			}
			var cur [outTimeout + 1]int64
			for o := range cur {
				cur[o] = counts[o].Load()
			}
			snt := sent.Load()
			log.Printf("t=%3ds %-8s sent %5d  admitted %5d rejected %5d errors %4d timeouts %5d  in flight %4d%s",
				sec-1, p[p.at(time.Duration(sec-1)*time.Second)].name, snt-prevSent,
				cur[outAdmitted]-prev[outAdmitted], cur[outRejected]-prev[outRejected], cur[outError]-prev[outError], cur[outTimeout]-prev[outTimeout],
				inFlight.Load(), extra(sec-1))
			prev, prevSent = cur, snt
		}
	}()

	// The pacer.
	runtime.LockOSThread()
	for i, at := range s.at {
		if w := time.Until(start.Add(at)); w > 0 {
			ts := syscall.NsecToTimespec(int64(w))
			_ = syscall.Nanosleep(&ts, nil)
		}
		if ctx.Err() != nil {
			break
		}
		due <- i
		sent.Add(1)
	}
	runtime.UnlockOSThread()
	close(due)
	wg.Wait()
	close(stopLive)
	<-liveDone
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("driving the load: %w", err)
	}
	return r, nil
}
