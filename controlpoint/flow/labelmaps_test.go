package flow

import "testing"

// A map that grew past KeepLabels is not kept; an emptied one is.
func TestFreeLabels(t *testing.T) {
	big := map[string]string{}
	for i := range KeepLabels + 1 {
		big[string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	FreeLabels(big)
	if len(big) != KeepLabels+1 {
		t.Fatalf("a map past KeepLabels was cleared (%d left): it is the caller's still", len(big))
	}
	small := map[string]string{"a": "1"}
	FreeLabels(small)
	if len(small) != 0 {
		t.Fatalf("a kept map was not emptied: %v", small)
	}
	FreeLabels(nil) // no map: nothing to keep
	if m := NewLabels(); len(m) != 0 {
		t.Fatalf("NewLabels = %v", m)
	}
}
