package gateway

import (
	"context"
	"io"
	"net/http"
	"time"
)

// outlierTick is how often passive outlier detection looks at a group.
const outlierTick = 100 * time.Millisecond

// runUpstream runs the active health checks and outlier detection of one
// group until ctx is done. Run starts one per group of the current
// snapshot and restarts them on Update.
func (g *Gateway) runUpstream(ctx context.Context, u *upstream) {
	var hc <-chan time.Time
	if u.health != nil {
		t := time.NewTicker(u.health.Interval)
		defer t.Stop()
		hc = t.C
		g.checkAll(ctx, u) // at once, not an interval late
	}
	var od <-chan time.Time
	if u.outlier != nil {
		t := time.NewTicker(outlierTick)
		defer t.Stop()
		od = t.C
	}
	report := time.NewTicker(time.Second)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hc:
			g.checkAll(ctx, u)
		case now := <-od:
			g.detectOutliers(u, now)
		case <-report.C:
		}
		g.metrics.reportUpstream(u, time.Now())
	}
}

// checkAll probes every target of u concurrently and waits for them.
func (g *Gateway) checkAll(ctx context.Context, u *upstream) {
	done := make(chan struct{}, len(u.targets))
	for _, t := range u.targets {
		go func() {
			ok := g.probe(ctx, u, t)
			if ctx.Err() == nil {
				g.recordCheck(u, t, ok)
			}
			done <- struct{}{}
		}()
	}
	for range u.targets {
		<-done
	}
}

// probe GETs the health path of t; 2xx and 3xx pass.
func (g *Gateway) probe(ctx context.Context, u *upstream, t *target) bool {
	ctx, cancel := context.WithTimeout(ctx, u.health.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.scheme+"://"+t.addr+u.health.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "fluxgate-health-check")
	resp, err := g.healthClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// recordCheck counts a probe result and moves t across the thresholds.
func (g *Gateway) recordCheck(u *upstream, t *target, ok bool) {
	t.mu.Lock()
	if ok {
		t.hcFails = 0
		t.hcOKs++
	} else {
		t.hcOKs = 0
		t.hcFails++
	}
	fails, oks := t.hcFails, t.hcOKs
	t.mu.Unlock()
	switch {
	case !ok && fails >= u.health.UnhealthyThreshold && t.healthy.Load():
		t.healthy.Store(false)
		g.logger.Warn("upstream target unhealthy", "upstream", u.name, "target", t.addr, "failed_checks", fails)
	case ok && oks >= u.health.HealthyThreshold && !t.healthy.Load():
		t.healthy.Store(true)
		g.logger.Info("upstream target healthy again", "upstream", u.name, "target", t.addr, "passed_checks", oks)
	}
}

// detectOutliers drains, until now+EjectFor, every target whose p95
// latency or failure ratio over the window exceeds its limit. A drained
// target's samples are cleared, so it returns with a clean slate.
func (g *Gateway) detectOutliers(u *upstream, now time.Time) {
	od := u.outlier
	for _, t := range u.targets {
		if now.UnixNano() < t.ejected.Load() {
			continue
		}
		n, failed, p95 := t.outlierStats(now.Add(-od.Window))
		if n < od.MinRequests {
			continue
		}
		rate := float64(failed) / float64(n)
		var why string
		switch {
		case od.P95Latency > 0 && p95 > od.P95Latency:
			why = "p95 latency"
		case od.ErrorRate > 0 && rate > od.ErrorRate:
			why = "error rate"
		default:
			continue
		}
		t.ejected.Store(now.Add(od.EjectFor).UnixNano())
		t.clearSamples(now)
		g.logger.Warn("upstream target drained by outlier detection", "upstream", u.name, "target", t.addr,
			"reason", why, "p95_latency", p95, "error_rate", rate, "requests", n, "eject_for", od.EjectFor)
	}
}
