package circuit_test

import (
	"testing"

	"github.com/fluxgate/fluxgate/circuit/circuittest"
)

// TestScripts runs the circuit scripts of testdata/*.test; the format is
// described in package circuittest.
func TestScripts(t *testing.T) { circuittest.RunDir(t, "testdata") }
