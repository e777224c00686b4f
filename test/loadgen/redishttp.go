package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// The -redis run also checks through GET /v1/check/http driven by wrk,
// when it is installed: a client that costs far less CPU a call than
// this process's gRPC callers, which share the machine's cores with the
// agent and Redis. Each call is one of 10,000 users (the Baggage entry
// user), at the exact and lazy_sync control points and, as the floor
// lazy_sync aims at, a local limiter that never asks Redis.

// localPolicyComponent is the floor's limiter, appended to redisPolicy.
const localPolicyComponent = `      - flow_control:
          rate_limiter:
            selectors: [{control_point: local}]
            in_ports: {bucket_capacity: {constant_signal: {value: 1e12}}, fill_amount: {constant_signal: {value: 1e12}}}
            parameters: {limit_by_label_key: user, interval: 1s}
`

// usersScript is wrk's Lua: every request checks the next of %[2]d users
// at control point %[1]q.
const usersScript = `local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/check/http", {
    ["X-Original-URI"] = "/api/items",
    ["X-FluxGate-Control-Point"] = %[1]q,
    ["Baggage"] = "user=u" .. (i %% %[2]d),
  })
end
`

// wrkMode is a loadMode driven by wrk at a control point.
type wrkMode struct {
	cp   string
	keys int
}

// httpModes are the wrk modes on agent, their names after prefix ("" or
// "baseline "), if wrk is installed.
func httpModes(agent *proc, prefix string) []loadMode {
	if _, err := exec.LookPath("wrk"); err != nil {
		if prefix == "" {
			fmt.Fprintln(os.Stderr, "wrk is not installed (Debian package wrk): the HTTP modes are left out")
		}
		return nil
	}
	return []loadMode{
		{name: prefix + "HTTP (wrk) exact, 10,000 keys", agent: agent, wrk: &wrkMode{"exact", 10_000}},
		{name: prefix + "HTTP (wrk) lazy_sync, 10,000 keys", agent: agent, wrk: &wrkMode{"lazy", 10_000}},
		{name: prefix + "HTTP (wrk) local limiter, 10,000 keys", agent: agent, wrk: &wrkMode{"local", 10_000}},
	}
}

// wrkChecks runs wrk against p's HTTP check for -duration with
// -wrk-connections connections and returns calls, calls/s, failures
// (non-2xx answers and socket errors) and wrk's own CPU a call.
func wrkChecks(p *proc, m *wrkMode) (map[string]float64, error) {
	dir, err := os.MkdirTemp("", "fluxgate-loadgen-wrk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "users.lua")
	if err := os.WriteFile(script, fmt.Appendf(nil, usersScript, m.cp, m.keys), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("wrk", "-t", "1", "-c", strconv.Itoa(*wrkConns), "-d", strconv.Itoa(max(1, int(duration.Seconds())))+"s",
		"-s", script, "http://"+p.httpAddr+"/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out)
	}
	r := parseWrk(string(out))
	if r["calls"] == 0 {
		return nil, fmt.Errorf("wrk answered nothing: %s", out)
	}
	used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r["loadgen µs CPU/call"] = used.Seconds() / r["calls"] * 1e6
	return r, nil
}

// parseWrk reads wrk's summary: requests, requests/s, non-2xx answers
// and socket errors.
func parseWrk(out string) map[string]float64 {
	r := map[string]float64{"failures": 0}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r["calls"], _ = strconv.ParseFloat(f[0], 64)
		case len(f) == 2 && f[0] == "Requests/sec:":
			r["calls/s"], _ = strconv.ParseFloat(f[1], 64)
		case len(f) >= 5 && f[0] == "Non-2xx":
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			r["failures"] += n
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			for _, part := range strings.Split(strings.Join(f[2:], " "), ",") {
				if kv := strings.Fields(part); len(kv) == 2 {
					n, _ := strconv.ParseFloat(kv[1], 64)
					r["failures"] += n
				}
			}
		}
	}
	return r
}
