package http1

// Bounds of a chunked body's framing. A chunk-size line (size and
// extensions, CRLF not counted) fits net/http's 4 KiB line reader, and the
// trailer section, its final CRLF included, fits the 4 KiB buffer net/http
// looks for its end in.
const (
	maxChunkLine = 4094
	maxTrailer   = 4096
)

// Framing errors of Scan; each is ErrUnsupported (errors.Is).
var (
	errChunkSize     error = framingError("http1: chunked: bad chunk size")
	errChunkTooLarge error = framingError("http1: chunked: chunk size overflows")
	errChunkLine     error = framingError("http1: chunked: chunk line too long or bad byte in extension")
	errChunkCRLF     error = framingError("http1: chunked: CRLF missing (bare LF or CR)")
	errChunkOverhead error = framingError("http1: chunked: too much non-data (net/http's limit)")
	errTrailer       error = framingError("http1: chunked: bad trailer field")
	errTrailerSize   error = framingError("http1: chunked: trailer section too large")
)

// States of Chunked.
const (
	stSize      = iota // chunk-size digits
	stExt              // chunk extension, up to CR
	stSizeLF           // LF ending the chunk-size line
	stData             // chunk data
	stDataCR           // CR after the data
	stDataLF           // LF after the data
	stTrailer          // start of a trailer line, or the final CRLF
	stFieldName        // trailer field name, up to ':'
	stFieldVal         // trailer field value, up to CR
	stFieldLF          // LF ending a trailer field
	stEndLF            // LF of the final CRLF
	stDone
)

// Chunked follows a chunked body passed on verbatim. Its zero value is at
// the start of a body; once Scan has said done, it returns 0 and done
// until the value is reset (c = Chunked{}).
type Chunked struct {
	state  uint8
	digits int    // chunk-size digits read
	line   int    // bytes of the chunk-size line read
	size   uint64 // the chunk's size, then its data left to read
	// excess follows net/http's bound on framing bytes against data
	// bytes, which fails a body that spends too much on extensions.
	excess  int64
	fields  int // trailer fields read
	trailer int // trailer section bytes read
}

// Scan reads the next bytes of a chunked body, b, and returns how many
// of them belong to it (n ≤ len(b)) and whether the body, its last chunk
// and trailer section included, ended there. Bytes past n belong to the
// next message. A framing error is ErrUnsupported wrapped with what was
// wrong.
func (c *Chunked) Scan(b []byte) (n int, done bool, err error) {
	for {
		k, _, done, err := c.Next(b[n:], len(b))
		n += k
		if done || err != nil || k == 0 || n == len(b) {
			return n, done, err
		}
	}
}

// InTrailer reports whether the body's last chunk has been read and its
// trailer section not yet to its end: what Next reads then is the trailer
// section, field lines and the final CRLF.
func (c *Chunked) InTrailer() bool { return c.state >= stTrailer && c.state != stDone }

// Next is Scan up to the end of the first run of chunk data in b, of at
// most max bytes, or up to the start of the trailer section: it returns
// how many bytes of b it read (framing and data), the data among them (a
// view of b, nil when none came), and whether the body ended. A caller
// that decodes the body calls it while it reads bytes; one that can take
// no more data passes max 0.
func (c *Chunked) Next(b []byte, max int) (n int, data []byte, done bool, err error) {
	i := 0
	for i < len(b) {
		if c.state == stData {
			if max <= 0 {
				return i, nil, false, nil
			}
			k := uint64(min(len(b)-i, max))
			if k > c.size {
				k = c.size
			}
			data = b[i : i+int(k)]
			i += int(k)
			c.size -= k
			if c.size == 0 {
				c.state = stDataCR
			}
			return i, data, false, nil
		}
		if c.state >= stTrailer {
			if c.state == stDone {
				return i, nil, true, nil
			}
			var e error
			if i, e = c.scanTrailer(b, i); e != nil {
				return i, nil, false, e
			}
			if c.state == stDone {
				return i, nil, true, nil
			}
			continue
		}
		if e := c.step(b[i]); e != nil {
			return i, nil, false, e
		}
		i++
		if c.state == stTrailer {
			return i, nil, false, nil // the last chunk: its trailer section follows
		}
	}
	return i, nil, c.state == stDone, nil
}

// step advances the chunk-size line and data-CRLF states by one byte.
func (c *Chunked) step(x byte) error {
	switch c.state {
	case stSize:
		switch {
		case class[x]&cHex != 0:
			if c.digits == 16 || c.size >= 1<<58 {
				// net/http takes 16 digits at most; sizes from 2^62 up
				// would overflow its overhead count (sizes near 2^58
				// cannot be sent anyway).
				return errChunkTooLarge
			}
			c.digits++
			c.size = c.size<<4 | uint64(unhex(x))
		case c.digits == 0:
			return errChunkSize
		case x == ';':
			c.state = stExt
		case x == '\r':
			c.state = stSizeLF
			return nil // CR is not counted in the line
		default: // white space, sign, "0x", bare LF...
			return errChunkSize
		}
		c.line++
	case stExt:
		switch x {
		case '\r':
			c.state = stSizeLF
			return nil
		case '\n', 0:
			return errChunkLine
		}
		c.line++
		if c.line > maxChunkLine {
			return errChunkLine
		}
	case stSizeLF:
		if x != '\n' {
			return errChunkCRLF
		}
		return c.endSizeLine()
	case stDataCR:
		if x != '\r' {
			return errChunkCRLF
		}
		c.state = stDataLF
	case stDataLF:
		if x != '\n' {
			return errChunkCRLF
		}
		c.state = stSize
	}
	return nil
}

// endSizeLine starts the chunk's data, or the trailer section after the
// last chunk, counting framing overhead as net/http does: the line and two
// CRLFs cost their length, and each chunk allows 16 bytes plus twice its
// size; more than 16 KiB owed fails the body.
func (c *Chunked) endSizeLine() error {
	c.excess += int64(c.line) + 2 - 16 - 2*int64(c.size)
	c.excess = max(c.excess, 0)
	if c.excess > 16<<10 {
		return errChunkOverhead
	}
	c.digits, c.line = 0, 0
	if c.size == 0 {
		c.state = stTrailer
	} else {
		c.state = stData
	}
	return nil
}

// scanTrailer reads the trailer section from b[i:]: fields as in a head,
// then CRLF. It returns the position it stopped at.
func (c *Chunked) scanTrailer(b []byte, i int) (int, error) {
	for ; i < len(b); i++ {
		x := b[i]
		c.trailer++
		if c.trailer > maxTrailer {
			return i, errTrailerSize
		}
		switch c.state {
		case stTrailer:
			switch {
			case x == '\r':
				c.state = stEndLF
			case class[x]&cToken != 0:
				if c.fields == MaxHeaders {
					return i, errTrailer
				}
				c.fields++
				c.state = stFieldName
			default: // obs-fold, bare LF, empty name...
				return i, errTrailer
			}
		case stFieldName:
			switch {
			case x == ':':
				c.state = stFieldVal
			case class[x]&cToken == 0:
				return i, errTrailer
			}
		case stFieldVal:
			switch {
			case x == '\r':
				c.state = stFieldLF
			case class[x]&cValue == 0:
				return i, errTrailer
			}
		case stFieldLF, stEndLF:
			if x != '\n' {
				return i, errChunkCRLF
			}
			if c.state == stEndLF {
				c.state = stDone
				return i + 1, nil
			}
			c.state = stTrailer
		}
	}
	return i, nil
}

func unhex(x byte) byte {
	switch {
	case x <= '9':
		return x - '0'
	case x <= 'F':
		return x - 'A' + 10
	}
	return x - 'a' + 10
}

// framingError is an error of Scan: ErrUnsupported with what was wrong.
type framingError string

func (e framingError) Error() string { return string(e) }

func (e framingError) Is(target error) bool { return target == ErrUnsupported }
