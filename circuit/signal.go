package circuit

import (
	"math"
	"time"
)

// Signal is the value on a wire for one tick. The zero value is invalid.
type Signal struct {
	V     float64
	Valid bool
}

// Value is a valid signal of v; NaN and ±Inf are invalid.
func Value(v float64) Signal {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Signal{}
	}
	return Signal{V: v, Valid: true}
}

// Invalid is a signal with no valid value.
var Invalid = Signal{}

// Bool is a valid signal of 1 (true) or 0 (false).
func Bool(b bool) Signal {
	if b {
		return Signal{V: 1, Valid: true}
	}
	return Signal{V: 0, Valid: true}
}

// True reports whether s is valid and non-zero.
func (s Signal) True() bool { return s.Valid && s.V != 0 }

// Float is the value, or NaN when invalid.
func (s Signal) Float() float64 {
	if !s.Valid {
		return math.NaN()
	}
	return s.V
}

// Tick is one evaluation of a circuit.
type Tick struct {
	Now      time.Time
	Interval time.Duration // the circuit's evaluation interval
	N        uint64        // ticks since the circuit started, from 0
}
