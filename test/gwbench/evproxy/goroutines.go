package main

import (
	"errors"
	"io"
	"log"
	"net"
	"syscall"
)

// The control: the same proxy (same parsing, same writes, one kept-alive
// upstream connection per client connection) on Go's usual model, a
// goroutine per connection blocking in net.Conn reads on the runtime's
// netpoller. What separates it from the gnet engine is the event loop;
// what separates it from fasthttp is the work done per request.

// serveGoroutines accepts on ln and serves each connection in a
// goroutine of its own until ln is closed.
func serveGoroutines(ln net.Listener, target string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			// A client leaving (wrk resets its connections at the end) is
			// no error of the proxy's.
			if err := proxyConn(c, target); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
				log.Printf("evproxy: %v", err)
			}
		}()
	}
}

// stream is a connection with its read buffer: buf[r:w] is unread.
type stream struct {
	conn net.Conn
	buf  []byte
	r, w int
}

func newStream(c net.Conn) *stream { return &stream{conn: c, buf: make([]byte, 64<<10)} }

func (s *stream) unread() []byte { return s.buf[s.r:s.w] }

// fill reads more, compacting the buffer first if it is full.
func (s *stream) fill() error {
	if s.w == len(s.buf) {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
		if s.w == len(s.buf) {
			return errors.New("buffer full")
		}
	}
	n, err := s.conn.Read(s.buf[s.w:])
	s.w += n
	if n > 0 {
		return nil
	}
	return err
}

// header reads until a whole header block is unread and returns its
// length; 0 means the block passed maxHeader.
func (s *stream) header() (int, error) {
	for {
		if end := headerEnd(s.unread()); end >= 0 {
			if end > maxHeader {
				return 0, nil
			}
			return end, nil
		}
		if s.w-s.r > maxHeader {
			return 0, nil
		}
		if err := s.fill(); err != nil {
			return -1, err
		}
	}
}

// relay writes the header block of length end (rewritten without its
// hop-by-hop fields if it has some) and a body of n bytes from s to dst,
// the header with the body bytes at hand in one write.
func (s *stream) relay(dst net.Conn, end int, n int64, hopByHop bool, scratch *[]byte) error {
	at := int(min(int64(s.w-s.r-end), n))
	out := s.buf[s.r : s.r+end+at]
	if hopByHop {
		*scratch = append(appendWithoutHopByHop((*scratch)[:0], s.buf[s.r:s.r+end]), s.buf[s.r+end:s.r+end+at]...)
		out = *scratch
	}
	if _, err := dst.Write(out); err != nil {
		return err
	}
	s.r += end + at
	for n -= int64(at); n > 0; {
		if s.r == s.w {
			s.r, s.w = 0, 0
			if err := s.fill(); err != nil {
				return err
			}
		}
		k := int(min(int64(s.w-s.r), n))
		if _, err := dst.Write(s.buf[s.r : s.r+k]); err != nil {
			return err
		}
		s.r += k
		n -= int64(k)
	}
	if s.r == s.w {
		s.r, s.w = 0, 0
	}
	return nil
}

// proxyConn serves one client connection over one upstream connection.
func proxyConn(c net.Conn, target string) error {
	defer func() { _ = c.Close() }()
	client := newStream(c)
	var up *stream
	defer func() {
		if up != nil {
			_ = up.conn.Close()
		}
	}()
	var scratch []byte
	for {
		end, err := client.header()
		if err != nil {
			return err
		}
		if end == 0 {
			_, _ = c.Write(errorResponse(431, "request header too large"))
			return nil
		}
		req, perr := parseRequest(client.unread()[:end])
		if perr != nil {
			_, _ = c.Write(errorResponse(perr.status, perr.msg))
			return nil
		}
		if up == nil {
			uc, err := net.Dial("tcp", target)
			if err != nil {
				_, _ = c.Write(errorResponse(502, "upstream unreachable"))
				return nil
			}
			up = newStream(uc)
		}
		if err := client.relay(up.conn, end, req.contentLength, req.hopByHop, &scratch); err != nil {
			return err
		}
		for {
			end, err := up.header()
			if err != nil || end == 0 {
				_, _ = c.Write(errorResponse(502, "upstream closed or sent a header too large"))
				return err
			}
			resp, perr := parseResponse(up.unread()[:end], req.head)
			if perr != nil {
				_, _ = c.Write(errorResponse(502, perr.msg))
				return nil
			}
			if err := up.relay(c, end, resp.contentLength, resp.hopByHop, &scratch); err != nil {
				return err
			}
			if resp.interim {
				continue
			}
			if req.close {
				return nil
			}
			if resp.close {
				_ = up.conn.Close()
				up = nil
			}
			break
		}
	}
}
