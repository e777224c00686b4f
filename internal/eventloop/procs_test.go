//go:build linux

package eventloop

import (
	"runtime"
	"testing"
)

// Running groups keep one P spare beyond their loops (procs.go): the
// first to start adds it, the last to close takes it back, and a group
// made meanwhile counts its loops without it.
func TestGroupsKeepASpareP(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(a.Loops()); n != before {
		t.Fatalf("%d loops by default, want GOMAXPROCS %d", n, before)
	}
	a.Start()
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		a.Close()
		t.Fatalf("GOMAXPROCS %d with a group running, want %d", got, before+1)
	}
	b, err := New(Options{})
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	if n := len(b.Loops()); n != before {
		t.Errorf("a group made while another runs has %d loops, want %d (the spare P not counted)", n, before)
	}
	b.Start()
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		t.Errorf("GOMAXPROCS %d with two groups running, want %d (one spare P)", got, before+1)
	}
	a.Close()
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		t.Errorf("GOMAXPROCS %d after one of two groups closed, want %d", got, before+1)
	}
	b.Close()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d after the groups closed, want %d", got, before)
	}
	c, err := New(Options{Loops: 1}) // never started: nothing to take back
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d after a group closed unstarted, want %d", got, before)
	}
}

// GOMAXPROCS set by someone else while groups run is left as it is.
func TestSpareLeavesOthersGOMAXPROCS(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	g, err := New(Options{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	runtime.GOMAXPROCS(before + 3)
	g.Close()
	if got := runtime.GOMAXPROCS(0); got != before+3 {
		t.Fatalf("GOMAXPROCS %d after the group closed, want %d as set meanwhile", got, before+3)
	}
}

// A group made with NoSpareP leaves GOMAXPROCS alone.
func TestNoSparePLeavesGOMAXPROCS(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	g, err := New(Options{Loops: 1, NoSpareP: true})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d with a NoSpareP group running, want %d", got, before)
	}
	g.Close()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d after it closed, want %d", got, before)
	}
}
