// Package controlpointpb holds the generated Go code of the FluxGate check
// API (fluxgate.flowcontrol.v1). Edit flowcontrol.proto and run go generate;
// never edit the generated files.
package controlpointpb
