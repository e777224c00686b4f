package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPickIsFreeBelowTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	lo, hi := drawRange()
	seen := map[int]bool{}
	for range 300 {
		p := Must(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if hi-lo >= minimumGap && (p < lo || p >= hi) {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
	// The last one is still free to bind.
	var last int
	for p := range seen {
		last = p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(last))
	if err != nil {
		t.Fatalf("port %d was handed out but cannot be bound: %v", last, err)
	}
	_ = ln.Close()
}

func TestPickSkipsBoundAndGivenPorts(t *testing.T) {
	// Two ports of the draw range: hold the first, so pick can only
	// give the second, once. A pair pick gave a port of already (other
	// tests of this process draw too) is passed over, and so is one whose
	// second port another process took between the probe and pick.
	for p := 20000; p < 30000; p += 2 {
		given.Lock()
		drawn := given.ports[p] || given.ports[p+1]
		given.Unlock()
		if drawn {
			continue
		}
		held, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		probe, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		if err != nil {
			_ = held.Close()
			continue
		}
		_ = probe.Close()
		got, err := pick(p, p+2)
		if err != nil && !free(p+1) {
			_ = held.Close() // taken by another process since the probe
			continue
		}
		if err != nil || got != p+1 {
			_ = held.Close()
			t.Fatalf("pick(%d, %d) = %d, %v; want %d (%d is bound)", p, p+2, got, err, p+1, p)
		}
		if got, err := pick(p, p+2); err == nil {
			t.Errorf("pick(%d, %d) gave %d again; want an error (one bound, one given)", p, p+2, got)
		}
		_ = held.Close()
		return
	}
	t.Fatal("no two free adjacent ports in [20000, 30000)")
}

// free reports whether port can be bound on 127.0.0.1 now.
func free(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
