package ratelimit

import (
	"bufio"
	"bytes"
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
