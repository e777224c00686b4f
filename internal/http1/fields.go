package http1

import "encoding/binary"

// Results of the head readers' steps besides a position > 0.
const (
	short = 0  // the bytes end inside the head: read more
	bad   = -1 // outside the subset
)

// framing is what the header fields say about the message's framing and
// the connection, gathered while reading them.
type framing struct {
	contentLength int64 // -1 without a Content-Length field
	nLength       int   // Content-Length fields
	nEncoding     int   // Transfer-Encoding fields
	chunked       bool  // the one Transfer-Encoding field says chunked
	nHost         int
	host          []byte
	close         bool // Connection lists close
	keepAlive     bool // Connection lists keep-alive
	upgrade       bool // Connection lists upgrade, or an Upgrade field
	expect        bool // an Expect field
}

// readFields reads header fields from b[i:lim] through the empty line
// that ends the head, appending them to *hs and noting the framing ones
// in f. It returns the head's end (past CRLF CRLF), short or bad.
func readFields(b []byte, i, lim int, hs *[]Header, f *framing) int {
	*f = framing{contentLength: -1}
	for {
		if i >= lim {
			return short
		}
		switch b[i] {
		case '\r':
			if i+1 >= lim {
				return short
			}
			if b[i+1] != '\n' {
				return bad
			}
			return i + 2
		case ' ', '\t': // obs-fold, or white space before the first field
			return bad
		}
		var h Header
		i, h = readField(b, i, lim)
		if i <= 0 {
			return i
		}
		if len(*hs) == MaxHeaders {
			return bad
		}
		*hs = append(*hs, h)
		if !f.note(h) {
			return bad
		}
	}
}

// readField reads one field line starting at b[i], not empty and not
// folded, and returns the position past its CRLF (or short or bad) and
// the field with its value's OWS trimmed.
func readField(b []byte, i, lim int) (int, Header) {
	start := i
	for i < lim && class[b[i]]&cToken != 0 {
		i++
	}
	if i >= lim {
		return short, Header{}
	}
	if i == start || b[i] != ':' {
		return bad, Header{}
	}
	name := b[start:i]
	i++
	for i < lim && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start = i
	i = skipValue(b, i, lim)
	if i+1 >= lim {
		return short, Header{}
	}
	if b[i] != '\r' || b[i+1] != '\n' {
		return bad, Header{}
	}
	return i + 2, Header{Name: name, Value: trimOWS(b[start:i])}
}

// note records a field's meaning for the framing; false means the field
// puts the message outside the subset.
func (f *framing) note(h Header) bool {
	n, v := h.Name, h.Value
	switch len(n) {
	case 4:
		if equalLower(n, "host") {
			f.nHost++
			f.host = v
		}
	case 6:
		if equalLower(n, "expect") {
			f.expect = true
		}
	case 7:
		if equalLower(n, "upgrade") {
			f.upgrade = true
		} else if equalLower(n, "trailer") {
			return trailerAllowed(v)
		}
	case 10:
		if equalLower(n, "connection") {
			f.connection(v)
		}
	case 14:
		if equalLower(n, "content-length") {
			f.nLength++
			f.contentLength = contentLength(v)
			return f.contentLength >= 0 && f.nLength == 1
		}
		return !equalDashes(n, "content-length")
	case 17:
		if equalLower(n, "transfer-encoding") {
			f.nEncoding++
			f.chunked = equalLower(v, "chunked")
			return f.chunked && f.nEncoding == 1
		}
		return !equalDashes(n, "transfer-encoding")
	}
	return true
}

// equalDashes is equalLower with '_' matching '-': Content_Length is a
// framing field to servers that map names to CGI-style variables
// (HTTP_CONTENT_LENGTH), so the subset refuses it.
func equalDashes(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if c := b[i] | 0x20; c != lower[i] && !(b[i] == '_' && lower[i] == '-') {
			return false
		}
	}
	return true
}

// contentLength is a Content-Length value of 1 to 18 digits, or -1.
func contentLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if class[c]&cDigit == 0 {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// nextElement splits the first element off a comma-separated list v,
// OWS trimmed, and returns it with the rest of the list.
func nextElement(v []byte) (e, rest []byte) {
	if j := indexComma(v); j >= 0 {
		return trimOWS(v[:j]), v[j+1:]
	}
	return trimOWS(v), nil
}

// connection notes the tokens of a Connection field: a comma-separated
// list whose elements, OWS trimmed, are compared as net/http does.
func (f *framing) connection(v []byte) {
	for len(v) > 0 {
		var e []byte
		e, v = nextElement(v)
		switch {
		case equalLower(e, "close"):
			f.close = true
		case equalLower(e, "keep-alive"):
			f.keepAlive = true
		case equalLower(e, "upgrade"):
			f.upgrade = true
		}
	}
}

// trailerAllowed reports whether a Trailer field names none of the fields
// net/http refuses there (it fails the whole message if one is named).
func trailerAllowed(v []byte) bool {
	for len(v) > 0 {
		var e []byte
		e, v = nextElement(v)
		if equalLower(e, "transfer-encoding") || equalLower(e, "content-length") || equalLower(e, "trailer") {
			return false
		}
	}
	return true
}

func indexComma(b []byte) int {
	for i, c := range b {
		if c == ',' {
			return i
		}
	}
	return -1
}

// skipValue returns the position of the first byte of b[i:lim] that is
// not a field-value byte, or lim. Eight bytes at a time while none is a
// control byte (below SP, HTAB included) or DEL, which covers almost all
// of a value; then one at a time.
func skipValue(b []byte, i, lim int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= lim {
		w := binary.LittleEndian.Uint64(b[i:])
		del := w ^ lo*0x7f
		// (x - lo*n) &^ x & hi is non-zero iff a byte of x is below n.
		if (w-lo*0x20)&^w&hi|(del-lo)&^del&hi != 0 {
			break
		}
		i += 8
	}
	for i < lim && class[b[i]]&cValue != 0 {
		i++
	}
	return i
}
