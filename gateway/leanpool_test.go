package gateway

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Connections idle in a lean pool for its idle duration are closed even
// when the pool is not used again (taken most recently used first, the
// least recently used ones would otherwise stay open to the target for
// good), and the pool's count of open connections follows.
func TestLeanPoolClosesIdleConnections(t *testing.T) {
	p := &leanPool{limit: leanMaxConns, idleFor: time.Hour}
	var far []net.Conn
	for range 3 {
		c, f := net.Pipe()
		t.Cleanup(func() { _ = c.Close(); _ = f.Close() })
		far = append(far, f)
		p.mu.Lock()
		p.open++
		p.mu.Unlock()
		p.put(&leanUpConn{c: c})
	}
	// The first two have been idle long; the last is fresh.
	p.mu.Lock()
	p.idle[0].used = time.Now().Add(-2 * time.Hour)
	p.idle[1].used = time.Now().Add(-2 * time.Hour)
	p.mu.Unlock()
	p.prune() // what the pool's timer runs
	for i, f := range far {
		_ = f.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // an open one times out; a pipe closed reads EOF at once
		_, err := f.Read(make([]byte, 1))
		if closed := errors.Is(err, io.EOF); closed != (i < 2) {
			t.Errorf("connection %d: closed %v (read: %v)", i, closed, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open != 1 || len(p.idle) != 1 {
		t.Errorf("open %d, idle %d; want 1 and 1", p.open, len(p.idle))
	}
}
