package h2

import (
	"net"
	"testing"
	"time"
)

// deadlineConn counts the write deadlines set on it and keeps the last.
type deadlineConn struct {
	net.Conn
	n    int
	last time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.n++
	c.last = t
	return nil
}

// Writes set the write deadline when the last one is older than a tenth
// of WriteTimeout (at most a second), so that writes close together cost
// one timer update, and none gets less than 90 % of WriteTimeout.
func TestWriteDeadlineSetOncePerSlack(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	dc := &deadlineConn{Conn: a}
	const timeout = 30 * time.Second
	c := newConn(&Server{WriteTimeout: timeout}, dc)
	nop := func() error { return nil }
	before := time.Now()
	for range 5 {
		if err := c.write(true, nop); err != nil {
			t.Fatal(err)
		}
	}
	if dc.n != 1 {
		t.Fatalf("5 writes at once set %d deadlines, want 1", dc.n)
	}
	if dc.last.Before(before.Add(timeout)) {
		t.Fatalf("deadline %v, want WriteTimeout after the write, at least %v", dc.last, before.Add(timeout))
	}
	// As if the deadline had been set more than a second ago.
	c.wdeadline = c.wdeadline.Add(-time.Second - time.Millisecond)
	if err := c.write(true, nop); err != nil {
		t.Fatal(err)
	}
	if dc.n != 2 {
		t.Fatalf("a write past the slack set %d deadlines in all, want 2", dc.n)
	}
	// A short timeout: the slack is a tenth of it.
	short := newConn(&Server{WriteTimeout: 100 * time.Millisecond}, dc)
	_ = short.write(true, nop)
	short.wdeadline = short.wdeadline.Add(-11 * time.Millisecond)
	_ = short.write(true, nop)
	if dc.n != 4 {
		t.Fatalf("writes 11 ms apart with a 100 ms timeout set %d deadlines in all, want 4", dc.n)
	}
}
