package server

import (
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

func TestMergeBaggage(t *testing.T) {
	for _, tc := range []struct {
		orig string
		add  map[string]string
		want string
	}{
		{"", nil, ""},
		{"a=1", nil, "a=1"},
		{"", map[string]string{"user": "alice"}, "user=alice"},
		{"a=1;p, user=bob", map[string]string{"user": "alice", "tier": "free"}, "tier=free,user=alice,a=1;p"},
		{"", map[string]string{"k": "a b,c;d=e%f\"g\\"}, "k=a%20b%2Cc%3Bd=e%25f%22g%5C"},
		{"", map[string]string{"bad key": "x", "ok": "y"}, "ok=y"},
		{",,=x", map[string]string{"ok": "y"}, "ok=y"},
	} {
		if got := mergeBaggage(tc.orig, tc.add); got != tc.want {
			t.Errorf("mergeBaggage(%q, %v) = %q, want %q", tc.orig, tc.add, got, tc.want)
		}
	}
	// What mergeBaggage writes, ParseBaggage reads back.
	add := map[string]string{"k": "a b,c;d=e%f\"g\\ ü"}
	got := map[string]string{}
	flow.ParseBaggage(mergeBaggage("", add), got)
	if got["k"] != add["k"] {
		t.Fatalf("round trip = %q", got["k"])
	}
}
