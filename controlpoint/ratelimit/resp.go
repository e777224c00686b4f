package ratelimit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// The few RESP2 pieces a stream needs (see stream.go): commands written
// as arrays of bulk strings, and replies read as Redis sends them to a
// connection that never said HELLO 3: simple strings, errors, integers,
// bulk strings and arrays of those. Values read come out as go-redis's
// Cmd gives them, so a reply means the same whichever path carried it:
// int64 for an integer, string for a simple or bulk string, nil for a
// nil bulk or array, []any for an array, respError for an error.

// respError is an error reply. It is a redis.Error, so that
// redis.HasErrorPrefix (isNoScript) reads it as it reads go-redis's.
type respError string

func (e respError) Error() string { return string(e) }

// RedisError marks respError as an error Redis answered.
func (respError) RedisError() {}

// Bounds of what a reply may hold; a reply past them is a broken
// connection, not an allocation. Our scripts answer 3 or 4 short items.
const (
	respMaxBulk  = 1 << 20
	respMaxArray = 1 << 16
	respMaxDepth = 8
)

// appendCommand appends one command, args as bulk strings: strings,
// byte slices, integers and floats (formatted as go-redis formats them:
// a float in the shortest 'f' form, a bool as 1 or 0). Another type is
// an error and b is returned unchanged.
func appendCommand(b []byte, args ...any) ([]byte, error) {
	start := len(b)
	b = appendLen(b, '*', len(args))
	for _, a := range args {
		var ok bool
		if b, ok = appendArg(b, a); !ok {
			return b[:start], fmt.Errorf("ratelimit: redis argument of type %T", a)
		}
	}
	return b, nil
}

func appendLen(b []byte, kind byte, n int) []byte {
	b = append(b, kind)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

func appendBulk(b []byte, s string) []byte {
	b = appendLen(b, '$', len(s))
	b = append(b, s...)
	return append(b, '\r', '\n')
}

func appendArg(b []byte, a any) ([]byte, bool) {
	var tmp [32]byte
	var n []byte
	switch v := a.(type) {
	case string:
		return appendBulk(b, v), true
	case []byte:
		n = v
	case int:
		n = strconv.AppendInt(tmp[:0], int64(v), 10)
	case int64:
		n = strconv.AppendInt(tmp[:0], v, 10)
	case float64:
		n = strconv.AppendFloat(tmp[:0], v, 'f', -1, 64)
	case bool:
		n = append(tmp[:0], '0')
		if v {
			n[0] = '1'
		}
	default:
		return b, false
	}
	b = appendLen(b, '$', len(n))
	b = append(b, n...)
	return append(b, '\r', '\n'), true
}

// errRESP is a reply that is not RESP2 as Redis writes it.
var errRESP = errors.New("ratelimit: malformed redis reply")

// readReply reads one reply. An error reply is a respError value, not an
// error: the error is for a connection that cannot be read any more.
func readReply(r *bufio.Reader) (any, error) {
	arr, v, err := readReplyArray(r)
	if arr != nil {
		return arr, err
	}
	return v, err
}

// readReplyArray is readReply with an array (a script's reply) returned
// as arr, without boxing it in an interface; any other reply is v.
func readReplyArray(r *bufio.Reader) (arr []any, v any, err error) {
	line, err := readLine(r)
	if err != nil {
		return nil, nil, err
	}
	if len(line) > 0 && line[0] == '*' {
		arr, err := readArray(r, line, 0)
		return arr, nil, err
	}
	v, err = readLineValue(r, line)
	return nil, v, err
}

func readValue(r *bufio.Reader, depth int) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) > 0 && line[0] == '*' {
		arr, err := readArray(r, line, depth)
		if arr == nil || err != nil {
			return nil, err // a nil array is nil, not a nil []any
		}
		return arr, nil
	}
	return readLineValue(r, line)
}

// readArray reads the elements of the array whose header is line: nil
// for a nil array (*-1).
func readArray(r *bufio.Reader, line []byte, depth int) ([]any, error) {
	n, err := parseLen(line[1:], respMaxArray)
	if err != nil || n < 0 {
		return nil, err
	}
	if depth >= respMaxDepth {
		return nil, errRESP
	}
	vals := make([]any, n)
	for i := range vals {
		if vals[i], err = readValue(r, depth+1); err != nil {
			return nil, err
		}
	}
	return vals, nil
}

// readLineValue reads the value whose first line is line, not an array.
func readLineValue(r *bufio.Reader, line []byte) (any, error) {
	if len(line) == 0 {
		return nil, errRESP
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return respError(line[1:]), nil
	case ':':
		n, ok := parseInt(line[1:])
		if !ok {
			return nil, errRESP
		}
		return n, nil
	case '$':
		n, err := parseLen(line[1:], respMaxBulk)
		if err != nil || n < 0 {
			return nil, err
		}
		if n+2 <= r.Size() { // read in place: a script's replies are short
			buf, err := r.Peek(n + 2)
			if err != nil {
				if errors.Is(err, bufio.ErrBufferFull) {
					err = errRESP
				}
				return nil, err
			}
			if buf[n] != '\r' || buf[n+1] != '\n' {
				return nil, errRESP
			}
			v := string(buf[:n])
			_, _ = r.Discard(n + 2)
			return v, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errRESP
		}
		return string(buf[:n]), nil
	}
	return nil, errRESP
}

// parseLen reads the length of a bulk string or an array: -1 (nil) up to
// limit. A nil comes back as -1 with a nil error.
func parseLen(s []byte, limit int) (int, error) {
	n, ok := parseInt(s)
	if !ok || n < -1 || n > int64(limit) {
		return 0, errRESP
	}
	return int(n), nil
}

// parseInt reads a decimal integer as strconv.ParseInt(s, 10, 64) does
// (an optional sign, then digits, within int64), without making s a
// string.
func parseInt(s []byte) (int64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var u uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case !neg && u <= math.MaxInt64:
		return int64(u), true
	case neg && u <= 1<<63:
		return -int64(u), true // -(1<<63) wraps to itself
	}
	return 0, false
}

// readLine reads up to CRLF and returns the line without it. The slice
// is valid until the next read.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errRESP
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errRESP
	}
	return line[:len(line)-2], nil
}
