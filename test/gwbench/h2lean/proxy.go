package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// maxBody bounds an upstream response body: the spike reads it whole
// before answering. Larger answers get 502.
const maxBody = 4 << 20

// upstream forwards requests over HTTP/1.1 to one address, on a pool of
// at most poolSize idle keep-alive connections. Safe for concurrent use.
type upstream struct {
	addr string
	idle chan *upConn
}

// upConn is a kept-alive upstream connection and its buffers.
type upConn struct {
	nc  net.Conn
	br  *bufio.Reader
	out []byte
}

func newUpstream(addr string, poolSize int) *upstream {
	return &upstream{addr: addr, idle: make(chan *upConn, poolSize)}
}

func (u *upstream) get() (*upConn, bool, error) {
	select {
	case uc := <-u.idle:
		return uc, true, nil
	default:
	}
	nc, err := net.DialTimeout("tcp", u.addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10)}, false, nil
}

func (u *upstream) put(uc *upConn) {
	select {
	case u.idle <- uc:
	default:
		_ = uc.nc.Close() // the pool is full
	}
}

// serve is the proxy mode's handler: the upstream's answer, or 502.
func (u *upstream) serve(r *request) *response {
	resp, err := u.roundTrip(r)
	if err != nil {
		return &response{status: 502, header: []hpack.HeaderField{{Name: "content-type", Value: "text/plain"}}, body: []byte("bad gateway\n")}
	}
	return resp
}

// roundTrip sends r on a pooled connection, or a new one if a reused one
// turns out to have been closed by the upstream and r has no body.
func (u *upstream) roundTrip(r *request) (*response, error) {
	for {
		uc, reused, err := u.get()
		if err != nil {
			return nil, err
		}
		resp, keep, err := uc.roundTrip(r)
		if err == nil {
			if keep {
				u.put(uc)
			} else {
				_ = uc.nc.Close()
			}
			return resp, nil
		}
		_ = uc.nc.Close()
		if !reused || len(r.body) > 0 || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
	}
}

// hopByHop reports the fields that do not cross a proxy (RFC 9110 7.6.1),
// and those HTTP/2 forbids; names in lower case.
func hopByHop(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "host", "content-length":
		return true
	}
	return false
}

// roundTrip writes r as HTTP/1.1 and reads the answer: status, fields
// and a Content-Length body. keep says whether uc can serve again.
func (uc *upConn) roundTrip(r *request) (resp *response, keep bool, err error) {
	b := append(uc.out[:0], r.method...)
	b = append(b, ' ')
	b = append(b, r.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.authority...)
	b = append(b, "\r\n"...)
	for _, hf := range r.header {
		if hopByHop(hf.Name) {
			continue
		}
		b = append(b, hf.Name...)
		b = append(b, ": "...)
		b = append(b, hf.Value...)
		b = append(b, "\r\n"...)
	}
	if len(r.body) > 0 || r.method == "POST" || r.method == "PUT" || r.method == "PATCH" {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(r.body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, r.body...)
	uc.out = b[:0]
	if cap(b) > 64<<10 {
		uc.out = nil // do not keep a large body's buffer
	}
	if _, err := uc.nc.Write(b); err != nil {
		return nil, false, err
	}
	for {
		resp, keep, err = uc.readResponse(r.method == "HEAD")
		if err != nil || resp.status >= 200 {
			return resp, keep, err
		}
		// 1xx: another answer follows.
	}
}

var (
	errStatusLine = errors.New("h2lean: bad upstream status line")
	errChunked    = errors.New("h2lean: upstream body without Content-Length")
	errTooLarge   = errors.New("h2lean: upstream body too large")
	errHeader     = errors.New("h2lean: bad upstream header")
)

func (uc *upConn) readResponse(head bool) (*response, bool, error) {
	line, err := uc.br.ReadSlice('\n')
	if err != nil {
		return nil, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return nil, false, errStatusLine
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return nil, false, errStatusLine
	}
	keep := line[7] == '1'
	resp := &response{status: status}
	length := int64(-1)
	for {
		line, err := uc.br.ReadSlice('\n')
		if err != nil {
			return nil, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false, errHeader
		}
		name := lowerName(line[:colon])
		value := string(bytes.TrimSpace(line[colon+1:]))
		switch name {
		case "content-length":
			if length, err = strconv.ParseInt(value, 10, 64); err != nil || length < 0 {
				return nil, false, errHeader
			}
		case "transfer-encoding":
			return nil, false, errChunked
		case "connection":
			if bytes.EqualFold([]byte(value), []byte("close")) {
				keep = false
			}
		}
		if !hopByHop(name) {
			resp.header = append(resp.header, hpack.HeaderField{Name: name, Value: value})
		}
	}
	if status < 200 || status == 204 || status == 304 || head {
		return resp, keep, nil
	}
	if length < 0 {
		return nil, false, errChunked
	}
	if length > maxBody {
		return nil, false, fmt.Errorf("%w: %d bytes", errTooLarge, length)
	}
	resp.body = make([]byte, length)
	if _, err := io.ReadFull(uc.br, resp.body); err != nil {
		return nil, false, err
	}
	return resp, keep, nil
}

// lowerNames holds the lower-case spelling of the field names seen,
// at most maxLowerNames of them: names past the bound are lowered each time.
var (
	lowerMu    sync.RWMutex
	lowerNames = map[string]string{} // guarded by lowerMu
)

const maxLowerNames = 256

// lowerName returns a field name in lower case, without allocating for
// the names seen before.
func lowerName(b []byte) string {
	lowerMu.RLock()
	low, ok := lowerNames[string(b)] // the conversion does not allocate
	lowerMu.RUnlock()
	if ok {
		return low
	}
	low = string(bytes.ToLower(b))
	lowerMu.Lock()
	if len(lowerNames) < maxLowerNames {
		lowerNames[string(b)] = low
	}
	lowerMu.Unlock()
	return low
}
