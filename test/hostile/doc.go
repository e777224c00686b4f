// Package hostile replays the attacks of issue 14 against the real
// binaries and asserts the bounds the agent and the gateway promise under
// abuse. It holds tests only (go test ./test/hostile).
//
// Each test builds ./cmd/fluxgate once (into a temporary directory),
// starts `fluxgate agent` or `fluxgate gateway` as a child process on
// free 127.0.0.1 ports with a generated fluxgate.yaml (the child gets
// SIGKILL when the test process dies), attacks it from many clients and
// asserts bounds on memory (VmRSS and VmHWM from /proc/PID/status, and the
// agent's own metrics), on counts (connections, admitted flows, buckets)
// and on status codes. No assertion is on latency: a deadline is only
// how long the test waits before it calls an answer missing, and is
// generous for a loaded 2-core machine.
//
// The counts are bounded so that the package runs in under three minutes
// in CI. `go test ./test/hostile -args -long` (or HOSTILE_LONG=1) raises
// them for a run by hand. RELIABILITY.md, at the repository root, records
// what was tried and measured.
//
// The suite needs Linux (/proc) and the go command to build the binary.
// Without them a test skips with the reason, except under CI=true, where
// a missing dependency fails the test.
package hostile
