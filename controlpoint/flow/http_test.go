package flow

import (
	"strings"
	"testing"
)

// reference is the label key's definition: the prefix, then the name in
// lower case with '-' as '_'.
func reference(name string) string {
	return LabelHeaderPrefix + strings.ReplaceAll(strings.ToLower(name), "-", "_")
}

func TestHeaderLabelFollowsItsDefinition(t *testing.T) {
	names := []string{"User-Agent", "user-agent", "X-USER-ID", "X-Api-Key", "x_y", "A", "", "Ünïcode-Name", "X-Ä-B", "Content-Length", "-"}
	for name := range commonHeaderLabels {
		names = append(names, name)
	}
	for _, name := range names {
		if got, want := HeaderLabel(name), reference(name); got != want {
			t.Errorf("HeaderLabel(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzHeaderLabel(f *testing.F) {
	f.Add("User-Agent")
	f.Add("Ä-b")
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := HeaderLabel(name), reference(name); got != want {
			t.Fatalf("HeaderLabel(%q) = %q, want %q", name, got, want)
		}
	})
}
