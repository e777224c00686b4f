package http1

// Byte classes, one bit each, looked up in class: a table read per byte is
// the whole cost of validating a head.
const (
	cToken  = 1 << iota // tchar (RFC 9110 section 5.6.2)
	cValue              // field-value byte: VCHAR, obs-text, SP, HTAB
	cTarget             // origin-form byte without a meaning here: 0x21-0x7E but '%', '?', '#'
	cHost               // a byte net/http's Host check (httpguts.ValidHostHeader) allows
	cHex                // HEXDIG
	cDigit              // DIGIT
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		var k uint8
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			k |= cToken | cHost
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			k |= cToken
		}
		switch c {
		case '!', '$', '%', '&', '(', ')', '*', '+', ',', '-', '.', ':', ';', '=', '[', '\'', ']', '_', '~':
			k |= cHost
		}
		if c >= 0x21 && c != 0x7f || c == ' ' || c == '\t' {
			k |= cValue
		}
		if c >= 0x21 && c <= 0x7e && c != '%' && c != '?' && c != '#' {
			k |= cTarget
		}
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' {
			k |= cHex
		}
		if c >= '0' && c <= '9' {
			k |= cDigit
		}
		t[c] = k
	}
	return t
}()

// equalLower reports whether b equals lower (lower-case letters and '-')
// ignoring ASCII case. b|0x20 maps only 'A'-'Z' onto 'a'-'z', and only
// CR (never in b) onto '-'.
func equalLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// trimOWS drops leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
