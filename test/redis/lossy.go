package redis

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// LossyLink dials real connections to Redis and can lose one reply on
// the way back: armed, the first write that carries at least MinScripts
// EVALSHA commands goes to Redis whole; the connection then reads Redis's
// replies to all of them (so the scripts surely ran), closes the real
// socket and reports io.EOF to the client instead. That is a network that
// drops a connection after the request arrived and before the reply
// did: the client cannot tell whether its commands ran.
//
// A LossyLink is safe for concurrent use; its Dial is a go-redis Dialer.
type LossyLink struct {
	MinScripts int // EVALSHA commands a write must carry to be hit; 0 means 1

	armed atomic.Bool
	lost  atomic.Int64 // EVALSHA commands that ran but whose replies were dropped
	hits  atomic.Int64 // faults injected
}

// Arm makes the next write with at least MinScripts EVALSHA commands
// lose its replies. One fault per Arm.
func (l *LossyLink) Arm() { l.armed.Store(true) }

// Lost is how many EVALSHA commands ran in Redis but had their replies
// dropped.
func (l *LossyLink) Lost() int64 { return l.lost.Load() }

// Hits is how many faults were injected.
func (l *LossyLink) Hits() int64 { return l.hits.Load() }

// Dial is a go-redis Dialer: a TCP connection to addr through the link.
func (l *LossyLink) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, link: l}, nil
}

var evalsha = []byte("\r\nevalsha\r\n") // a RESP bulk string's body, as go-redis writes it

type lossyConn struct {
	net.Conn
	link *LossyLink

	mu   sync.Mutex
	drop int // replies to read and drop, then fail: guarded by mu
}

func (c *lossyConn) Write(p []byte) (int, error) {
	n := bytes.Count(bytes.ToLower(p), evalsha)
	if n >= max(c.link.MinScripts, 1) && c.link.armed.CompareAndSwap(true, false) {
		c.mu.Lock()
		c.drop = n
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *lossyConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	drop := c.drop
	c.drop = 0
	c.mu.Unlock()
	if drop == 0 {
		return c.Conn.Read(p)
	}
	// Redis's replies come back and are thrown away: the scripts ran.
	r := bufio.NewReader(c.Conn)
	for range drop {
		if err := skipReply(r); err != nil {
			_ = c.Conn.Close()
			return 0, err
		}
	}
	c.link.lost.Add(int64(drop))
	c.link.hits.Add(1)
	_ = c.Conn.Close()
	return 0, io.EOF
}

// skipReply reads one RESP2 or RESP3 reply.
func skipReply(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return errors.New("redis: short RESP line")
	}
	n, _ := strconv.Atoi(string(line[1 : len(line)-2]))
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '!', '=':
		if n < 0 {
			return nil
		}
		_, err := r.Discard(n + 2)
		return err
	case '*', '~', '>':
	case '%', '|':
		n *= 2
	default:
		return errors.New("redis: unknown RESP type " + string(line[0]))
	}
	for range n {
		if err := skipReply(r); err != nil {
			return err
		}
	}
	if line[0] == '|' { // an attribute precedes the reply itself
		return skipReply(r)
	}
	return nil
}
