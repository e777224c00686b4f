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

// ParseBaggage reads the W3C members (properties dropped, values
// unescaped, empty and keyless members skipped, labels already set kept)
// without allocating for a plain header: the nginx example and the load
// driver send one on every check.
func TestParseBaggage(t *testing.T) {
	labels := map[string]string{"tier": "gold"}
	ParseBaggage(" user = alice ;prop=1,tier=free,,=x,noeq,path=%2Fa%20b,bad=%zz", labels)
	want := map[string]string{"tier": "gold", "user": "alice", "path": "/a b"}
	if len(labels) != len(want) {
		t.Fatalf("labels %v, want %v", labels, want)
	}
	for k, v := range want {
		if labels[k] != v {
			t.Fatalf("labels %v, want %v", labels, want)
		}
	}
	m := make(map[string]string, 8)
	if n := testing.AllocsPerRun(100, func() { clear(m); ParseBaggage("user=u42,tenant=acme", m) }); n != 0 {
		t.Errorf("ParseBaggage allocates %v objects a header, want 0", n)
	}
}
