// Package gateway tests the built-in gateway end to end: real upstream
// servers on loopback ports behind a gateway.Gateway served over HTTP,
// with bounded load.
package gateway
