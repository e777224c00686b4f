// Package metricnames names the metrics of FluxGate's public contract, their
// labels and the label values users write PromQL, alerts and dashboards
// against (the list is in DESIGN.md's "Metrics"). The packages that export
// a metric and the ones that query it (blueprints, dashboards, the UI)
// spell its name here, so a name is written once.
//
// The package holds constants only and imports nothing, so the Go SDK
// and fluxctl can use it without linking anything. Renaming a constant's
// value breaks users' queries: change one only with a reason in the README
// and an entry in CHANGELOG.md.
package metricnames
