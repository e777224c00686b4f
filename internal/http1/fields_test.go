package http1

import (
	"math/rand/v2"
	"testing"
)

// TestSkipValue holds the eight-at-a-time value scan to the one-byte
// class check, with every byte value at every offset of a word.
func TestSkipValue(t *testing.T) {
	naive := func(b []byte) int {
		i := 0
		for i < len(b) && class[b[i]]&cValue != 0 {
			i++
		}
		return i
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for c := range 256 {
		for at := range 20 {
			b := make([]byte, 24)
			for i := range b {
				b[i] = byte(0x20 + rng.UintN(0x5f)) // SP..'~'
				if rng.IntN(4) == 0 {
					b[i] = byte(0x80 + rng.UintN(0x80)) // obs-text
				}
			}
			b[at] = byte(c)
			if got, want := skipValue(b, 0, len(b)), naive(b); got != want {
				t.Fatalf("skipValue(%q) = %d, want %d", b, got, want)
			}
		}
	}
}
