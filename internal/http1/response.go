package http1

// ParseResponse is ParseRequest for a response head.
func ParseResponse(b []byte, max int, r *Response) (int, error) {
	return result(parseResponse(b, min(len(b), max), r), len(b), max)
}

func parseResponse(b []byte, lim int, r *Response) int {
	i := statusLine(b, lim, r)
	if i <= 0 {
		return i
	}
	r.Headers = r.Headers[:0]
	var f framing
	i = readFields(b, i, lim, &r.Headers, &f)
	if i <= 0 {
		return i
	}
	// net/http ignores Transfer-Encoding in an HTTP/1.0 message; a reader
	// that did not would frame the body differently.
	if f.nEncoding > 0 && (f.nLength > 0 || r.Minor == 0) {
		return bad
	}
	r.ContentLength = f.contentLength
	r.Chunked = f.chunked
	r.Close = f.close || r.Minor == 0 && !f.keepAlive
	return i
}

// statusLine reads `HTTP/1.x SP 3DIGIT [SP reason] CRLF` into r and
// returns the position past it, short or bad. Status codes outside
// 100-599, and 101 (the subset has no upgrades), are bad.
func statusLine(b []byte, lim int, r *Response) int {
	const v = "HTTP/1."
	for i := 0; i < len(v); i++ {
		if i >= lim {
			return short
		}
		if b[i] != v[i] {
			return bad
		}
	}
	i := len(v)
	if i+5 > lim {
		return short
	}
	switch b[i] {
	case '0', '1':
		r.Minor = int(b[i] - '0')
	default:
		return bad
	}
	if b[i+1] != ' ' {
		return bad
	}
	d := b[i+2 : i+5]
	if class[d[0]]&cDigit == 0 || class[d[1]]&cDigit == 0 || class[d[2]]&cDigit == 0 {
		return bad
	}
	r.Status = int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	if r.Status < 100 || r.Status > 599 || r.Status == 101 {
		return bad
	}
	i += 5
	if i >= lim {
		return short
	}
	start := i
	if b[i] == ' ' {
		i++
		start = i
		for i < lim && class[b[i]]&cValue != 0 {
			i++
		}
	}
	if i+1 >= lim {
		return short
	}
	if b[i] != '\r' || b[i+1] != '\n' {
		return bad
	}
	r.Reason = b[start:i]
	return i + 2
}

// BodyLength is the response's body framing (RFC 9112 section 6.3) for a
// request made with method head (HEAD) or not: a length > 0, BodyNone,
// BodyChunked or BodyToClose.
func (r *Response) BodyLength(head bool) int64 {
	switch {
	case head, r.Status < 200, r.Status == 204, r.Status == 304:
		return BodyNone
	case r.Chunked:
		return BodyChunked
	case r.ContentLength >= 0:
		return r.ContentLength
	}
	return BodyToClose
}
