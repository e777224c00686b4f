package main

import (
	"bytes"
	"strconv"
)

// parseError is a request the proxy refuses, with the status to answer.
type parseError struct {
	status int
	msg    string
}

func bad(status int, msg string) *parseError { return &parseError{status, msg} }

// message is what the proxy needs of a request's or a response's header.
type message struct {
	contentLength int64
	close         bool // the sender closes (or asks to close) after this exchange
	hopByHop      bool // it has hop-by-hop headers to drop when forwarded
	head          bool // request: HEAD
	interim       bool // response: 1xx, the final one follows
}

// headerEnd returns the length of the header block at the start of buf,
// its blank line included, or -1 while it is incomplete.
func headerEnd(buf []byte) int {
	i := bytes.Index(buf, crlfcrlf)
	if i < 0 {
		return -1
	}
	return i + len(crlfcrlf)
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// parseRequest reads a request's header block (blank line included).
func parseRequest(h []byte) (message, *parseError) {
	var m message
	line, rest, _ := bytes.Cut(h, crlf)
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !isToken(method) {
		return m, bad(400, "malformed request line")
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		m.close = true
	default:
		return m, bad(400, "unsupported HTTP version "+strconv.Quote(string(version)))
	}
	m.head = string(method) == "HEAD"
	if err := m.readFields(rest, false); err != nil {
		return m, err
	}
	return m, nil
}

// parseResponse reads a response's header block; head says the request
// was HEAD (no body whatever the length says).
func parseResponse(h []byte, head bool) (message, *parseError) {
	var m message
	line, rest, _ := bytes.Cut(h, crlf)
	version, line, _ := bytes.Cut(line, []byte(" "))
	code, _, _ := bytes.Cut(line, []byte(" "))
	status, err := strconv.Atoi(string(code))
	if len(code) != 3 || err != nil || status < 100 {
		return m, bad(502, "malformed status line from upstream")
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		m.close = true
	default:
		return m, bad(502, "unsupported HTTP version from upstream")
	}
	m.contentLength = -1
	if perr := m.readFields(rest, true); perr != nil {
		return m, bad(502, "upstream: "+perr.msg)
	}
	switch {
	case status == 101:
		return m, bad(502, "protocol upgrades are not supported")
	case status < 200:
		m.interim, m.contentLength = true, 0
	case head || status == 204 || status == 304:
		m.contentLength = 0
	case m.contentLength < 0:
		return m, bad(502, "upstream response without Content-Length (chunked or until close) is not supported")
	}
	return m, nil
}

// readFields reads the header fields after the start line; a response's
// Transfer-Encoding leaves its length unknown (-1), a request's is
// refused.
func (m *message) readFields(fields []byte, response bool) *parseError {
	seenLength := false
	for len(fields) > 0 {
		var line []byte
		line, fields, _ = bytes.Cut(fields, crlf)
		if len(line) == 0 {
			break // the blank line
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) {
			return bad(400, "malformed header line")
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, hContentLength):
			n, err := strconv.ParseInt(string(value), 10, 63)
			if err != nil || n < 0 || value[0] == '+' {
				return bad(400, "invalid Content-Length")
			}
			if seenLength && m.contentLength != n {
				return bad(400, "conflicting Content-Length headers")
			}
			m.contentLength, seenLength = n, true
		case bytes.EqualFold(name, hTransferEncoding):
			if !response {
				return bad(501, "Transfer-Encoding is not supported")
			}
			m.hopByHop, m.contentLength, seenLength = true, -1, true
		case bytes.EqualFold(name, hConnection):
			m.hopByHop = true
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				if bytes.EqualFold(bytes.Trim(tok, " \t"), []byte("close")) {
					m.close = true
				}
			}
		case isHopByHop(name):
			m.hopByHop = true
		}
	}
	return nil
}

var (
	hContentLength    = []byte("Content-Length")
	hTransferEncoding = []byte("Transfer-Encoding")
	hConnection       = []byte("Connection")
	hopByHopNames     = [][]byte{hConnection, []byte("Keep-Alive"), []byte("Proxy-Connection"), []byte("TE"),
		[]byte("Trailer"), []byte("Upgrade"), hTransferEncoding}
)

func isHopByHop(name []byte) bool {
	for _, h := range hopByHopNames {
		if bytes.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// appendWithoutHopByHop appends header block h to dst without its
// hop-by-hop fields.
func appendWithoutHopByHop(dst, h []byte) []byte {
	start, fields, _ := bytes.Cut(h, crlf)
	dst = append(append(dst, start...), crlf...)
	for len(fields) > 0 {
		var line []byte
		line, fields, _ = bytes.Cut(fields, crlf)
		if len(line) == 0 {
			break
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		if !isHopByHop(name) {
			dst = append(append(dst, line...), crlf...)
		}
	}
	return append(dst, crlf...)
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}
