package http1

// ParseRequest reads the request head at the start of b into r, reusing
// r.Headers' memory. It returns the head's length when b holds a whole
// head in the subset, 0 and nil when b holds a prefix of one (read more),
// and ErrUnsupported otherwise. A head longer than max bytes is
// ErrUnsupported.
func ParseRequest(b []byte, max int, r *Request) (int, error) {
	return result(parseRequest(b, min(len(b), max), r), len(b), max)
}

// result turns a parser's n for b (a head's length, short or unsupported)
// into ParseRequest's and ParseResponse's answer: a head that would pass
// max bytes is unsupported even when it is not whole yet.
func result(n, have, max int) (int, error) {
	switch {
	case n > 0:
		return n, nil
	case n == short && have < max:
		return 0, nil
	}
	return 0, ErrUnsupported
}

func parseRequest(b []byte, lim int, r *Request) int {
	i := requestLine(b, lim, r)
	if i <= 0 {
		return i
	}
	r.Headers = r.Headers[:0]
	var f framing
	i = readFields(b, i, lim, &r.Headers, &f)
	if i <= 0 {
		return i
	}
	if f.nHost != 1 || !validHost(f.host) || f.upgrade || f.expect ||
		f.chunked && f.nLength > 0 {
		return bad
	}
	r.Host = f.host
	r.ContentLength = f.contentLength
	r.Chunked = f.chunked
	r.Close = f.close
	return i
}

// requestLine reads `method SP origin-form SP HTTP/1.1 CRLF` into r and
// returns the position past it, short or bad. CONNECT is bad even with an
// origin-form target.
func requestLine(b []byte, lim int, r *Request) int {
	i := 0
	for i < lim && class[b[i]]&cToken != 0 {
		i++
	}
	if i >= lim {
		return short
	}
	if i == 0 || b[i] != ' ' {
		return bad
	}
	r.Method = b[:i]
	if string(r.Method) == "CONNECT" { // a 2xx answer turns the connection into a tunnel
		return bad
	}
	i++
	start := i
	if i >= lim {
		return short
	}
	if b[i] != '/' {
		return bad
	}
	escaped, query := false, false
target:
	for {
		for i < lim && class[b[i]]&cTarget != 0 {
			i++
		}
		if i >= lim {
			return short
		}
		switch b[i] {
		case '?':
			query = true
		case '%':
			escaped = escaped || !query
		case ' ':
			break target
		default: // '#', a control byte, SP, obs-text
			return bad
		}
		i++
	}
	r.Target = b[start:i]
	if escaped && !pathEscapesValid(r.Target) {
		return bad
	}
	const v = " HTTP/1.1\r\n"
	for j := 0; j < len(v); j++ {
		if i+j >= lim {
			return short
		}
		if b[i+j] != v[j] {
			return bad
		}
	}
	return i + len(v)
}

// pathEscapesValid reports whether every '%' in the target's path (before
// the first '?') starts a %XX escape, as net/url requires.
func pathEscapesValid(t []byte) bool {
	for i := 0; i < len(t) && t[i] != '?'; i++ {
		if t[i] != '%' {
			continue
		}
		if i+2 >= len(t) || class[t[i+1]]&cHex == 0 || class[t[i+2]]&cHex == 0 {
			return false
		}
		i += 2
	}
	return true
}

// validHost reports whether a Host value is non-empty and made only of
// the bytes net/http's server accepts there (no '/', '@', white space).
func validHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if class[c]&cHost == 0 {
			return false
		}
	}
	return true
}
