package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// deadlineCounter counts the read deadlines set on a connection.
type deadlineCounter struct {
	net.Conn
	n int
}

func (c *deadlineCounter) SetReadDeadline(t time.Time) error {
	c.n++
	return c.Conn.SetReadDeadline(t)
}

// The direct path (and leanTransport) lifts the response-head deadline
// only when it will read a body from the connection: an answer whose
// body came whole with its head leaves the deadline armed for the next
// request, which then sets none while it is fresh. Two deadline updates
// a request (arm, then lift) were 3-5 % of the gateway's CPU under
// HTTP/2 load. A body still to come is read without the deadline.
func TestLeanBodyLiftsTheDeadlineOnlyForABodyStillToCome(t *testing.T) {
	c, s := tcpPair(t)
	late := make(chan struct{})
	go func() {
		br := bufio.NewReader(s)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
			if req.URL.Path != "/late" {
				_, _ = io.WriteString(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			_, _ = io.WriteString(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
			<-late
			_, _ = io.WriteString(s, "ok")
		}
	}()
	dc := &deadlineCounter{Conn: c}
	pool := &leanPool{idleFor: time.Hour}
	t.Cleanup(func() {
		if pool.pruning != nil {
			pool.pruning.Stop()
		}
	})
	up := &leanUpConn{c: dc, buf: make([]byte, leanBufStart), peek: newPeeker(c)}
	const timeout = time.Minute
	roundTrip := func(path string, then func()) {
		t.Helper()
		if _, err := up.exchange([]byte("GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"), time.Now(), timeout, nil); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var b leanBody
		var trailer http.Header
		if !b.start(pool, up, up.resp.BodyLength(false), &trailer) {
			t.Fatalf("%s: no body", path)
		}
		if then != nil {
			then()
		}
		body, err := io.ReadAll(&b)
		if err != nil || string(body) != "ok" {
			t.Fatalf("%s: body %q, %v", path, body, err)
		}
	}
	roundTrip("/whole", nil)
	if dc.n != 1 || !up.armed {
		t.Fatalf("a body that came with its head: %d deadline updates (want 1, the arming), armed %v (want true)", dc.n, up.armed)
	}
	roundTrip("/whole", nil)
	if dc.n != 1 {
		t.Fatalf("the next request within the slack: %d deadline updates in all, want still 1", dc.n)
	}
	roundTrip("/late", func() {
		if dc.n != 2 || up.armed {
			t.Errorf("a body still to come: %d deadline updates (want 2: lifted), armed %v (want false)", dc.n, up.armed)
		}
		close(late)
	})
}
