// Package nginx is the end-to-end test of the nginx auth_request
// integration: a real nginx, configured from examples/nginx, in front of a
// test upstream, with a FluxGate agent deciding. It needs the nginx binary
// (Debian package nginx-light, installed by make deps) and skips without it.
package nginx
