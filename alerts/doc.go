// Package alerts holds FluxGate's built-in operational Prometheus alert
// rules: agent down, policy reload errors, invalid circuit signals, flux
// meter error rate and latency, fail-open and Redis errors, gateway 5xx
// rate and latency, and open circuit breakers.
//
// The rules are one embedded rule file (fluxgate-operational.rules.yaml),
// returned by Rules and written by `fluxgate alerts generate`. Every rule
// carries a severity label and summary, description and runbook_url
// annotations; the runbooks are in runbooks.md. The file is checked by
// model/rulefmt and by promtool's `check rules` and `test rules` in this
// package's tests.
package alerts
