// Package agent is the FluxGate agent process: its configuration file, the
// HTTP, gRPC and metrics servers, health and readiness, and the policy store
// that loads policy files from a directory and reloads them live.
//
// An Agent is built with New from Options and served with Run (or Start and
// Stop); the program runs it as one part of package fluxgate's Run, which
// also reads the config file and hands the agent its changes
// (ApplyConfig). Other parts of the program add actuator kinds the
// decision engine does not build (SetActuators) and policies they compile
// (SetCompiledPolicies) without the agent knowing their types. Everything an
// Agent serves is bound at Start, so a port of 0 picks a free port and the
// bound addresses are available from HTTPAddr, GRPCAddr and MetricsAddr.
//
// The HTTP API's operator endpoints (policies, dynamic config, signals,
// explain, control points, and whatever HandleHTTP mounts) want the bearer
// token admin.token and are off, answering 403, while it is empty. The
// check API (HTTP and gRPC) and the OTLP receiver are open while
// check.token and otlp.token are empty and want those bearer tokens once
// set; health, probes and metrics stay open. auth.go has the rules, and
// the agent logs at Start which surface is open to whom.
//
// The PolicyStore is the single source of truth for loaded policies. It
// publishes immutable PolicySnapshot values: readers never lock, and an
// unchanged policy keeps the same *PolicyEntry across reloads so that
// consumers can carry runtime state by identity. A change that fails to
// parse or validate is refused and the last good version of that file keeps
// running.
//
// All types here are safe for concurrent use unless their comment says
// otherwise.
package agent
