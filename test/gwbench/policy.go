package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// The -policy levels: what decides at the gateways' control point
// (ingress) while they are measured.
const (
	policyNone  = "none"  // an empty policies dir: the control point decides nothing
	policyLimit = "limit" // a rate limiter keyed by X-User, never rejecting
	policyFull  = "full"  // limit, a flux meter and an adaptive concurrency limiter that never binds
)

// policyLevels are -policy's values, in order of cost.
var policyLevels = []string{policyNone, policyLimit, policyFull}

// userHeader is the request field the rate limiter keys on
// (http.request.header.x_user) and userValue its value in every request
// the drivers send under limit and full, to every contender alike.
const (
	userHeader = "X-User"
	userValue  = "alice"
)

// fluxMeterName is the flux meter of -policy full.
const fluxMeterName = "gwbench-latency"

// rateLimiterYAML is the rate limiter of limit and full: a token bucket
// per X-User of 10¹² tokens refilled every second, which no run on one
// machine can drain, so it decides every request (and answers its
// RateLimit-* fields) and rejects none.
const rateLimiterYAML = `      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1e12}}
              fill_amount: {constant_signal: {value: 1e12}}
            parameters: {limit_by_label_key: http.request.header.x_user, interval: 1s}
`

// adaptiveYAML is full's adaptive concurrency limiter: it learns from
// every flow's end as the gateway reports it, but its limit is held at
// 1,000 to 10,000 flows in flight, above the most a run has (50
// connections, 10 streams each under -h2), so it never queues or
// rejects.
const adaptiveYAML = `      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: ingress}]
            parameters: {initial_concurrency: 1000, min_concurrency: 1000, max_concurrency: 10000}
`

// policyText is the policy file of level, or "" for none.
func policyText(level string) (string, error) {
	head := "apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: gwbench-" + level + ", namespace: default}\nspec:\n"
	switch level {
	case policyNone:
		return "", nil
	case policyLimit:
		return head + "  circuit:\n    components:\n" + rateLimiterYAML, nil
	case policyFull:
		return head + "  resources:\n    flux_meters:\n      " + fluxMeterName + ":\n        selectors: [{control_point: ingress}]\n" +
			"  circuit:\n    components:\n" + rateLimiterYAML + adaptiveYAML, nil
	}
	return "", fmt.Errorf("-policy %q: want one of %s", level, strings.Join(policyLevels, ", "))
}

// policyLabel says which policy ran, for the printed tables.
func policyLabel(level string) string {
	switch level {
	case policyLimit:
		return "policy limit at the gateways' control point (a rate limiter keyed by X-User, 10¹² tokens a second: it decides every request and rejects none; every request of every contender carries X-User: alice)"
	case policyFull:
		return "policy full at the gateways' control point (the rate limiter of limit, a flux meter fed by every flow and an adaptive concurrency limiter held at ≥ 1,000 flows in flight, so it never binds; every request carries X-User: alice)"
	}
	return "no policy at the gateways' control point (an empty policies dir: the control point decides nothing)"
}

// withUser reports whether the drivers send X-User (limit and full).
func withUser() bool { return *policyOn != policyNone }

// verifyPolicy checks that the gateway at url decides under level: each
// of a few requests answered 200 with X-FluxGate-Decision: accepted and
// RateLimit-Limit (limit and full), and, for full, the flux meter's count
// on the agent's metrics (at metricsURL) grown by at least as many flows.
// Without it a run would silently measure a gateway that decided nothing.
func verifyPolicy(url, metricsURL, level string) error {
	if level == policyNone {
		return nil
	}
	client := &http.Client{Timeout: 5 * time.Second}
	if srvTLS != nil {
		client.Transport = &http.Transport{TLSClientConfig: srvTLS.ClientConfig(), ForceAttemptHTTP2: *h2On}
		defer client.CloseIdleConnections()
	}
	before, err := fluxMeterCount(metricsURL)
	if err != nil && level == policyFull {
		return err
	}
	const n = 20
	for range n {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set(userHeader, userValue)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err := checkDecided(resp); err != nil {
			return fmt.Errorf("%s under -policy %s: %w", url, level, err)
		}
	}
	if level != policyFull {
		return nil
	}
	return waitFluxMeter(metricsURL, before, n)
}

// checkDecided wants an answer that a policy's rate limiter decided and
// admitted.
func checkDecided(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if d := resp.Header.Get(flow.HeaderDecision); d != "accepted" {
		return fmt.Errorf("%s %q, want accepted: the control point did not decide", flow.HeaderDecision, d)
	}
	if resp.Header.Get("RateLimit-Limit") == "" {
		return errors.New("no RateLimit-Limit: the rate limiter did not decide")
	}
	return nil
}

// waitFluxMeter waits (flows are recorded after their answers are sent)
// until the flux meter's count on metricsURL is at least before+n.
func waitFluxMeter(metricsURL string, before, n float64) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		after, err := fluxMeterCount(metricsURL)
		if err == nil && after-before >= n {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("%s: flux_meter_count{flux_meter_name=%q} grew by %.0f for %.0f flows: the flux meter is not fed", metricsURL, fluxMeterName, after-before, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fluxMeterCount sums flux_meter_count of fluxMeterName on the Prometheus
// text exposition at metricsURL; before any flow it has no series and
// counts 0 (callers compare counts).
func fluxMeterCount(metricsURL string) (float64, error) {
	resp, err := http.Get(metricsURL)
	if err != nil {
		return 0, fmt.Errorf("agent metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("agent metrics %s: status %d", metricsURL, resp.StatusCode)
	}
	return sumSeries(resp.Body, "flux_meter_count", `flux_meter_name="`+fluxMeterName+`"`)
}

// sumSeries sums the samples of metric whose labels contain label in a
// Prometheus text exposition.
func sumSeries(r io.Reader, metric, label string) (float64, error) {
	sc := bufio.NewScanner(io.LimitReader(r, 64<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metric+"{")
		if !ok || !strings.Contains(rest, label) {
			continue
		}
		i := strings.LastIndexByte(rest, '}')
		if i < 0 {
			return 0, fmt.Errorf("malformed sample %q", line)
		}
		f := strings.Fields(rest[i+1:])
		if len(f) == 0 {
			return 0, fmt.Errorf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("sample %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}
