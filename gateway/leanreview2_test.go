package gateway

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// A pooled lean connection keeps the response-head deadline of its last
// request (it is lifted only before a body is read), so the deadline has
// often passed by the time the connection is taken again. The look at
// the idle connection must not take that for something to read: the
// connection was discarded, and every connection idle longer than
// ResponseHeaderTimeout redialled.
func TestIdleReadableIgnoresAPassedReadDeadline(t *testing.T) {
	c, s := tcpPair(t)
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	p := newPeeker(c)
	if p.idleReadable() {
		t.Fatal("an idle connection whose read deadline passed is taken as readable")
	}
	// It still sees what the target sends.
	if _, err := io.WriteString(s, "x"); err != nil {
		t.Fatal(err)
	}
	for i := 0; !p.idleReadable(); i++ {
		if i == 500 {
			t.Fatal("a byte the target sent is never seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
