// Package http1 reads the heads and chunked framing of HTTP/1.1 messages
// for the gateway's lean engine, strictly: it accepts only a plain subset
// of what RFC 9112 allows, and says ErrUnsupported for everything else,
// which the engine then hands to a full HTTP server (fasthttp) with the
// bytes unread. A message this package accepts is read the same way by
// net/http (the fuzz tests hold it to that), so a request cannot mean one
// thing to the gateway and another to the upstream (request smuggling).
//
// The subset: lines end in CRLF (no bare LF or CR, no NUL, no obs-fold);
// field names are tokens followed directly by ':'; values are visible
// ASCII, obs-text, SP and HTAB, their outer white space trimmed; at most
// MaxHeaders fields. A request is `METHOD /target HTTP/1.1` (not CONNECT;
// the target without '#' and with well-formed %XX escapes in its path)
// with exactly one Host field of the bytes net/http's server allows; it
// has no Expect or Upgrade field and no Connection: upgrade. A response is
// HTTP/1.1 or HTTP/1.0 with a status of 100-599 other than 101. In both,
// Content-Length is one field of 1-18 digits, Transfer-Encoding one field
// saying chunked (not with Content-Length, not in HTTP/1.0), and a Trailer
// field names no framing field; no field is named Content_Length or
// Transfer_Encoding (CGI-style servers read '_' as '-'). A chunked body
// keeps to net/http's limits: chunk-size lines (size and extensions) of
// at most 4094 bytes, a trailer section of at most 4096, and net/http's
// cap on extension bytes against data bytes.
//
// Parsed values are views of the caller's buffer: valid while it is
// unchanged. Nothing here allocates on the hot path or is shared between
// goroutines.
package http1

import "errors"

// ErrUnsupported means the bytes are not in the subset this package reads;
// they may still be valid HTTP. The caller hands them to a full server
// (a request) or answers 502 (a target's response).
var ErrUnsupported = errors.New("http1: outside the lean subset")

// MaxHeaders bounds the header fields of one head.
const MaxHeaders = 100

// Header is one header field as sent: its name's case is kept.
type Header struct {
	Name, Value []byte
}

// Request is a request head.
type Request struct {
	Method []byte
	Target []byte // origin-form: starts with '/'
	Host   []byte // the one Host header's value

	// Headers are all the fields in order, Host included.
	Headers []Header

	// Framing of the body: ContentLength >= 0 with one Content-Length
	// field, -1 without; Chunked with Transfer-Encoding: chunked (then
	// ContentLength is -1). Neither: no body.
	ContentLength int64
	Chunked       bool

	// Close: the client asked to close the connection after this
	// request (a Connection field listing close).
	Close bool
}

// Response is a response head.
type Response struct {
	Status  int
	Reason  []byte
	Minor   int // 1 for HTTP/1.1, 0 for HTTP/1.0
	Headers []Header

	// Framing as sent; BodyLength tells the body's framing once the
	// request's method is known.
	ContentLength int64 // -1 without a Content-Length field
	Chunked       bool

	// Close: the connection cannot carry another request after this
	// response (Connection: close, or HTTP/1.0 without keep-alive).
	Close bool
}

// Body framings BodyLength returns.
const (
	BodyNone    = 0  // no body
	BodyChunked = -1 // chunked to its last chunk
	BodyToClose = -2 // until the target closes the connection
)
