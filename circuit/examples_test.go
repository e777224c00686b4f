package circuit_test

import (
	"os"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

// TestExamplesParse checks that the example policies that use circuit
// kinds parse once this package's kinds are registered.
func TestExamplesParse(t *testing.T) {
	for _, f := range []string{"../policies/examples/service-protection.yaml"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := policies.Parse(f, src)
		if err != nil {
			t.Fatalf("%s:\n%v", f, err)
		}
		if len(docs) != 1 {
			t.Fatalf("%s: %d documents, want 1", f, len(docs))
		}
	}
}
