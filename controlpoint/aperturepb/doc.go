// Package aperturepb holds the generated Go code of FluxNinja Aperture's
// check API (aperture.flowcontrol.check.v1) and HTTP check API
// (aperture.flowcontrol.checkhttp.v1), which the agent serves beside its
// own so that Aperture's SDKs and gateway integrations work against it
// unchanged. Edit aperture_check.proto or aperture_checkhttp.proto and run
// go generate; never edit the generated files. google/rpc/status.proto
// only lets protoc resolve an import: its Go code is genproto's.
package aperturepb
