// Package blueprints turns a short values file into a complete, checked
// FluxGate policy and the files that go with it.
//
// A Blueprint is a named, parameterised policy: rate-limiting,
// service-protection, latency-slo, availability-slo, and for the built-in
// gateway canary-rollout. Its values file is
// YAML decoded strictly (unknown keys and wrong types are errors with
// file:line:col, all reported at once); Values returns a commented
// example that documents every parameter and generates a working policy
// unchanged. Generate renders the policy from an embedded text/template and
// puts it through the checks `fluxgate policy validate` runs (strict
// decoding, circuit compilation, decision-engine compilation) before it
// returns anything, then derives from the checked policy:
//
//   - NAME.yaml            the policy
//   - NAME.rules.yaml      Prometheus alerting and recording rules, checked
//     with the Prometheus rule parser
//   - NAME.rules_test.yaml a `promtool test rules` file (SLO blueprints)
//   - NAME.dashboard.json  a Grafana dashboard: one panel per circuit
//     signal and per flux meter, data source as a variable
//   - NAME.dot, NAME.mmd   the circuit graph (Graphviz, Mermaid)
//
// Blueprints register themselves from one file each (register); the
// package holds no other state. Everything is safe for concurrent use.
package blueprints
