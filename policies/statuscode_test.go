package policies_test

import (
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	"github.com/fluxgate/fluxgate/policies"
)

// TestStatusCodeNames checks every name of Aperture's StatusCode enum.
func TestStatusCodeNames(t *testing.T) {
	for name, code := range aperturepb.StatusCode_value {
		if code == 0 {
			continue // Empty
		}
		if got, ok := policies.StatusCodeByName(name); !ok || got != int(code) {
			t.Errorf("StatusCodeByName(%q) = %d, %v; want %d", name, got, ok, code)
		}
	}
}
