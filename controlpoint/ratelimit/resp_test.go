package ratelimit

import (
	"bufio"
	"bytes"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

func TestAppendCommand(t *testing.T) {
	got, err := appendCommand(nil, "evalsha", "abc", 1, "k", 2.5, int64(-7), 1e9, true, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	want := "*9\r\n$7\r\nevalsha\r\n$3\r\nabc\r\n$1\r\n1\r\n$1\r\nk\r\n$3\r\n2.5\r\n$2\r\n-7\r\n$10\r\n1000000000\r\n$1\r\n1\r\n$1\r\nx\r\n"
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	prefix := []byte("keep")
	if b, err := appendCommand(prefix, "a", struct{}{}); err == nil || string(b) != "keep" {
		t.Errorf("unsupported argument: %q, %v; want the buffer unchanged and an error", b, err)
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
		bad  bool
	}{
		{in: "+OK\r\n", want: "OK"},
		{in: "-NOSCRIPT No matching script\r\n", want: respError("NOSCRIPT No matching script")},
		{in: ":-42\r\n", want: int64(-42)},
		{in: "$5\r\nhello\r\n", want: "hello"},
		{in: "$0\r\n\r\n", want: ""},
		{in: "$-1\r\n", want: nil},
		{in: "*-1\r\n", want: nil},
		{in: "*4\r\n:1\r\n$3\r\n9.5\r\n:0\r\n:100\r\n", want: []any{int64(1), "9.5", int64(0), int64(100)}},
		{in: "*2\r\n*1\r\n:1\r\n-ERR x\r\n", want: []any{[]any{int64(1)}, respError("ERR x")}},
		{in: "$5\r\nhel\r\n", bad: true},                        // short bulk
		{in: "$3\r\nhelxx", bad: true},                          // no CRLF after the bulk
		{in: ":12a\r\n", bad: true},                             // not an integer
		{in: "?x\r\n", bad: true},                               // unknown type
		{in: "+OK\n", bad: true},                                // LF alone
		{in: "$99999999999\r\n", bad: true},                     // past respMaxBulk
		{in: "*2\r\n:1\r\n", bad: true},                         // array cut short
		{in: strings.Repeat("*1\r\n", 9) + ":1\r\n", bad: true}, // too deep
	} {
		got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %#v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	if !goredis.HasErrorPrefix(respError("NOSCRIPT x"), "NOSCRIPT") {
		t.Error("a respError is not a redis.Error")
	}
}

// FuzzReadReply: any input either fails or reads a value whose encoding
// reads back the same.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "*2\r\n:1\r\n$-1\r\n", "*1\r\n*1\r\n+x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := readReply(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			return
		}
		enc := encodeReply(nil, v)
		again, err := readReply(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("%q read as %#v, encoded %q, read back %#v, %v", in, v, enc, again, err)
		}
	})
}

// encodeReply writes v as Redis would: strings as bulk strings.
func encodeReply(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "$-1\r\n"...)
	case string:
		return appendBulk(b, v)
	case int64:
		b = strconv.AppendInt(append(b, ':'), v, 10)
		return append(b, '\r', '\n')
	case respError:
		return append(append(append(b, '-'), v...), '\r', '\n')
	case []any:
		b = appendLen(b, '*', len(v))
		for _, x := range v {
			b = encodeReply(b, x)
		}
		return b
	}
	panic("unknown value")
}

// refReadValue is the reader as it was before replies were read in place
// and integers parsed from bytes: strconv on a string, each bulk string
// read into a buffer of its own.
func refReadValue(r *bufio.Reader, depth int) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errRESP
	}
	refLen := func(s []byte, limit int) (int, error) {
		n, err := strconv.Atoi(string(s))
		if err != nil || n < -1 || n > limit {
			return 0, errRESP
		}
		return n, nil
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return respError(line[1:]), nil
	case ':':
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil {
			return nil, errRESP
		}
		return n, nil
	case '$':
		n, err := refLen(line[1:], respMaxBulk)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errRESP
		}
		return string(buf[:n]), nil
	case '*':
		n, err := refLen(line[1:], respMaxArray)
		if err != nil || n < 0 {
			return nil, err
		}
		if depth >= respMaxDepth {
			return nil, errRESP
		}
		vals := make([]any, n)
		for i := range vals {
			if vals[i], err = refReadValue(r, depth+1); err != nil {
				return nil, err
			}
		}
		return vals, nil
	}
	return nil, errRESP
}

// FuzzReadReplyAsBefore: the reader reads what the reference reads and
// fails where it fails, reply after reply (so it stops where the
// reference stops) — with a small read buffer too, where bulk strings do
// not fit in place.
func FuzzReadReplyAsBefore(f *testing.F) {
	for _, s := range []string{"*4\r\n:1\r\n$3\r\n9.5\r\n:0\r\n:100\r\n", ":+5\r\n", ":-9223372036854775808\r\n", ":9223372036854775808\r\n",
		"$-1\r\n", "*-1\r\n", "*0\r\n", "$20\r\n01234567890123456789\r\n:1\r\n", ":\r\n", ":-\r\n", "$+3\r\nabc\r\n"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, small bool) {
		size := 4096
		if small {
			size = 16
		}
		r, ref := bufio.NewReaderSize(bytes.NewReader(in), size), bufio.NewReaderSize(bytes.NewReader(in), size)
		for range 3 {
			got, err := readReply(r)
			want, werr := refReadValue(ref, 0)
			if (err == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: read %#v, %v; before %#v, %v", in, got, err, want, werr)
			}
			if err != nil {
				return
			}
		}
	})
}

func TestParseInt(t *testing.T) {
	for _, s := range []string{"0", "-0", "+0", "7", "-42", "+42", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616", "99999999999999999999",
		"", "-", "+", "1a", " 1", "1 ", "0x10", "1_000", "--1"} {
		got, ok := parseInt([]byte(s))
		want, err := strconv.ParseInt(s, 10, 64)
		if ok != (err == nil) || (ok && got != want) {
			t.Errorf("parseInt(%q) = %d, %v; strconv: %d, %v", s, got, ok, want, err)
		}
	}
}

func TestReadScriptReplyAllocations(t *testing.T) {
	in := strings.Repeat("*4\r\n:1\r\n$17\r\n99999999.25000001\r\n:0\r\n:1000000\r\n", 200)
	r := bufio.NewReader(strings.NewReader(in))
	// The array, its bulk string (made, then boxed) and one integer past
	// 255 (boxed); the reader took 6 before it read in place.
	if n := testing.AllocsPerRun(100, func() { _, _, _ = readReplyArray(r) }); n > 4 {
		t.Fatalf("a script's reply took %v allocations to read, want at most 4", n)
	}
}
