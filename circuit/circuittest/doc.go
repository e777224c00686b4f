// Package circuittest runs circuit scripts: small text files that build a
// circuit from policy YAML, feed its input signals tick by tick and expect
// signal values, actuator inputs, alerts, log lines or compile errors. It
// is to circuits what Prometheus's promqltest is to PromQL.
//
// RunDir runs every *.test file of a directory as a subtest; RunFile runs
// one. A script is a sequence of commands, one a line; # starts a comment
// (outside double quotes), blank lines are ignored.
//
//	# An EMA over 3 ticks.
//	circuit 1s
//	- ema:
//	    in_ports: {input: {signal_name: X}}
//	    out_ports: {output: {signal_name: Y}}
//	    parameters: {ema_window: 3s}
//	end
//	inputs X
//	tick 0   X=10       expect Y=10
//	tick 1   X=20       expect Y=15
//	tick 2-4 X=invalid  expect Y=15
//
// The commands:
//
//	circuit INTERVAL [no_alert_sink]
//	    Starts a new circuit, evaluated every INTERVAL (a Go duration). The
//	    lines up to "end" are the items of spec.circuit.components, written
//	    from column 0; the harness wraps them in a Policy named
//	    "circuittest" and compiles it with policies.Parse and
//	    circuit.Compile. Each circuit gets a fresh FakeActuators, FakeAlerts
//	    (none with no_alert_sink: alerters then only log) and
//	    circuit.DynamicConfig.
//	inputs NAME...
//	    Signals that no component produces and the script feeds
//	    (circuit.Env.Inputs). Before the first tick.
//	dynamic KEY=VALUE... | dynamic clear
//	    Sets (or clears) dynamic config values of the policy; a VALUE is a
//	    number, true, false, or else a string.
//	tick N[-M] [NAME=VALUE...] [expect NAME=VALUE...]
//	    Runs the ticks skipped since the last tick command with the
//	    inputs unchanged and unchecked, sets the inputs given (they keep
//	    their value until set again), runs tick N and checks the
//	    expectations; a range N-M runs and checks every tick from N to M.
//	    Tick n runs at T0 + n·INTERVAL. Ticks only go forward.
//	expect actuator C.PORT=VALUE...
//	    The latest value actuator component C (its index in the component
//	    list) received on PORT; invalid stands for NaN.
//	expect alerts none | expect alerts fire:NAME|resolve:NAME...
//	    The alert notifications so far, in order. Delivery is
//	    asynchronous, so the harness waits up to a second for them.
//	expect log "TEXT" | expect no log "TEXT"
//	    Some log line of the circuit so far contains TEXT, or none does.
//	expect error "TEXT"
//	    Compiling the circuit fails with an error containing TEXT. Errors
//	    are positioned at the script's file and line.
//
// A VALUE is a number, true (1), false (0) or invalid. Numbers match
// within a relative tolerance of 1e-9 (an absolute one of 1e-12 near 0),
// so 0.1+0.2 matches 0.3; invalid matches only invalid.
package circuittest
