package client

import (
	"fmt"
	"testing"
	"time"
)

// A step table for the breaker alone, with explicit times.
func TestBreakerSteps(t *testing.T) {
	var transitions []string
	b := newBreaker(2, time.Second, func(from, to breakerState) {
		transitions = append(transitions, from.String()+">"+to.String())
	})
	type op int
	const (
		allow op = iota
		succeed
		fail
		abandon
	)
	steps := []struct {
		at        time.Duration
		op        op
		probe     bool // for succeed/fail/abandon: the call was the probe
		wantOK    bool // for allow
		wantProbe bool // for allow
		want      breakerState
	}{
		{at: 0, op: allow, wantOK: true, want: breakerClosed},
		{at: 0, op: fail, want: breakerClosed},
		{at: 0, op: succeed, want: breakerClosed}, // resets the count
		{at: 0, op: fail, want: breakerClosed},
		{at: 1, op: fail, want: breakerOpen},
		{at: 500 * time.Millisecond, op: succeed, want: breakerOpen}, // a late answer from before does not close it
		{at: 999 * time.Millisecond, op: allow, wantOK: false, want: breakerOpen},
		{at: time.Second + 1, op: allow, wantOK: true, wantProbe: true, want: breakerHalfOpen},
		{at: time.Second + 2, op: allow, wantOK: false, want: breakerHalfOpen}, // one probe at a time
		{at: time.Second + 3, op: fail, want: breakerHalfOpen},                 // not the probe
		{at: time.Second + 4, op: abandon, probe: true, want: breakerOpen},
		{at: time.Second + 5, op: allow, wantOK: true, wantProbe: true, want: breakerHalfOpen}, // cool-down already over
		{at: time.Second + 6, op: fail, probe: true, want: breakerOpen},
		{at: 2 * time.Second, op: allow, wantOK: false, want: breakerOpen},
		{at: 2*time.Second + 6, op: allow, wantOK: true, wantProbe: true, want: breakerHalfOpen},
		{at: 2*time.Second + 7, op: succeed, probe: true, want: breakerClosed},
		{at: 2*time.Second + 8, op: allow, wantOK: true, want: breakerClosed},
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		switch s.op {
		case allow:
			ok, probe := b.allow(now)
			if ok != s.wantOK || probe != s.wantProbe {
				t.Fatalf("step %d: allow = %v, %v; want %v, %v", i, ok, probe, s.wantOK, s.wantProbe)
			}
		case succeed:
			b.success(s.probe)
		case fail:
			b.failure(now, s.probe)
		case abandon:
			b.abandon(s.probe)
		}
		if got := b.current(); got != s.want {
			t.Fatalf("step %d: state %v, want %v", i, got, s.want)
		}
	}
	want := "[closed>open open>half_open half_open>open open>half_open half_open>open open>half_open half_open>closed]"
	if got := fmt.Sprint(transitions); got != want {
		t.Fatalf("transitions %s\nwant        %s", got, want)
	}
}
