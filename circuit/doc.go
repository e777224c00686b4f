// Package circuit runs a policy's circuit: a dataflow graph of signal
// components that reads PromQL signals and retunes actuators (rate
// limiters, samplers, gateway weights) every tick.
//
// A policy's spec.circuit.components compile into a Circuit. Components
// connect through in_ports and out_ports by signal_name, or take a
// constant_signal. Every signal has exactly one producer.
//
// Each tick (spec.circuit.evaluation_interval, default 1s) every component
// steps once, in an order fixed at compile time: a component runs after
// the producers of its inputs whenever the graph allows. Loops are
// allowed; when the remaining components all wait on each other, the one
// declared first runs next and reads its not-yet-updated inputs' values
// from the previous tick. That rule never stalls a tick, whatever the
// cycle structure, and is deterministic.
//
// Signals are float64 values with explicit validity (Signal). Each
// component documents what an invalid input does. Time is a parameter of
// Step, so circuits replay deterministically in tests and in `fluxgate
// sim`; only Runtime owns tickers.
//
// Component kinds register themselves (Register) from one file each; the
// flow-control actuators (rate limiter, sampler) are registered by the
// agent's wiring through RegisterActuator, since circuit never imports the
// decision engine.
package circuit
