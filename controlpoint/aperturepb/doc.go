// Package aperturepb holds the generated Go code of FluxNinja Aperture's
// check API (aperture.flowcontrol.check.v1), which the agent serves beside
// its own so that Aperture's SDKs work against it unchanged. Edit
// aperture_check.proto and run go generate; never edit the generated files.
package aperturepb
