package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
)

// Status is the state of one component as health reports it.
type Status string

// The statuses a component reports, from best to worst.
const (
	StatusHealthy   Status = "healthy"
	StatusDegraded  Status = "degraded" // working, but something needs an operator's attention
	StatusUnhealthy Status = "unhealthy"
)

// ComponentHealth is what a component reports about itself.
type ComponentHealth struct {
	Status  Status   `json:"status"`
	Message string   `json:"message,omitempty"`
	Errors  []string `json:"errors,omitempty"`
}

// HealthCheck reports the current health of one component. It is called on
// every health request, so it must be cheap and must not block.
type HealthCheck func() ComponentHealth

// Health aggregates component checks into the agent's health answer. A
// required component that is unhealthy makes the agent unhealthy (HTTP 503);
// an optional one only degrades it.
type Health struct {
	mu     sync.Mutex
	checks map[string]healthEntry // guarded by mu
}

type healthEntry struct {
	check    HealthCheck
	required bool
}

// NewHealth returns an empty Health: with no components it reports healthy.
func NewHealth() *Health {
	return &Health{checks: make(map[string]healthEntry)}
}

// Register adds or replaces the check for component name.
func (h *Health) Register(name string, required bool, check HealthCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = healthEntry{check: check, required: required}
}

// remoteHealth is the check of an optional remote dependency at addr
// (what it is for, such as "circuits query"), whose health reports
// whether it was heard and why the last exchange failed: degraded with
// the reason while it is unreachable. Its health must not block.
func remoteHealth(what, addr string, health func() (known bool, err error)) HealthCheck {
	return func() ComponentHealth {
		known, err := health()
		switch {
		case !known:
			return ComponentHealth{Status: StatusHealthy, Message: fmt.Sprintf("%s %s (not contacted yet)", what, addr)}
		case err != nil:
			return ComponentHealth{Status: StatusDegraded, Message: fmt.Sprintf("%s %s, which is unreachable: %v", what, addr, err)}
		}
		return ComponentHealth{Status: StatusHealthy, Message: fmt.Sprintf("%s %s", what, addr)}
	}
}

// HealthReport is the JSON body of /v1/monitoring/health.
type HealthReport struct {
	Status     Status                     `json:"status"`
	Components map[string]ComponentHealth `json:"components"`
}

// Report evaluates every check.
func (h *Health) Report() HealthReport {
	h.mu.Lock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	entries := make(map[string]healthEntry, len(h.checks))
	for n, e := range h.checks {
		entries[n] = e
	}
	h.mu.Unlock()
	sort.Strings(names)

	r := HealthReport{Status: StatusHealthy, Components: make(map[string]ComponentHealth, len(names))}
	for _, n := range names {
		e := entries[n]
		c := e.check()
		r.Components[n] = c
		switch {
		case c.Status == StatusUnhealthy && e.required:
			r.Status = StatusUnhealthy
		case c.Status != StatusHealthy && r.Status == StatusHealthy:
			r.Status = StatusDegraded
		}
	}
	return r
}

// ServeHTTP answers 200 when the agent is healthy or degraded and 503 when a
// required component is unhealthy.
func (h *Health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r := h.Report()
	code := http.StatusOK
	if r.Status == StatusUnhealthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// errorBody is the JSON shape of every API error.
type errorBody struct {
	Error string `json:"error"`
	// Message explains a coded Error (admin_disabled, unauthorized).
	Message string   `json:"message,omitempty"`
	Errors  []string `json:"errors,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string, details ...string) {
	writeJSON(w, code, errorBody{Error: msg, Errors: details})
}
