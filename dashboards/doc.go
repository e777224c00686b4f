// Package dashboards generates Grafana dashboards for FluxGate: the
// overview dashboard (uid fluxgate-ops-01, "FluxGate Gateway Overview")
// and one dashboard per policy, built from the policy's flux meters,
// circuit signals and actuators.
//
// A Dashboard is a Go value that marshals to Grafana's dashboard JSON
// model (schemaVersion 39). Every panel queries the data source chosen by
// the dashboard's "datasource" template variable, a Prometheus data
// source whose default Options.Datasource names. Queries use Grafana's
// $__rate_interval and $__range and the dashboard's own variables; Queries
// lists them so tests can parse and run each one.
//
// Functions here are pure: they neither read files nor talk to Grafana.
package dashboards
