package http1

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/http/httputil"
	"strings"
	"testing"
)

// chunkedCases are bodies in and out of the subset; they also seed
// FuzzChunked. end is where the body ends (-1: refused).
var chunkedCases = []struct {
	name string
	in   string
	end  int
}{
	{"empty body", "0\r\n\r\n", 5},
	{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 26},
	{"next request follows", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 11},
	{"hex cases", "a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", 35},
	{"leading zeros, 16 digits", "0000000000000001\r\nx\r\n0\r\n\r\n", 26},
	{"extensions", "1;a=b;c=\"d e\"\r\nx\r\n0;last\r\n\r\n", 28},
	{"trailers", "1\r\nx\r\n0\r\nX-Sum: 12\r\nX-Empty:\r\n\r\n", 32},
	{"zero last chunk with zeros", "000\r\n\r\n", 7},

	{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", -1},
	{"space before size", " 5\r\nhello\r\n0\r\n\r\n", -1},
	{"space after size", "5 \r\nhello\r\n0\r\n\r\n", -1},
	{"space before extension", "5 ;a\r\nhello\r\n0\r\n\r\n", -1},
	{"sign", "+5\r\nhello\r\n0\r\n\r\n", -1},
	{"empty size", "\r\nhello\r\n0\r\n\r\n", -1},
	{"17 digits", "00000000000000001\r\nx\r\n0\r\n\r\n", -1},
	{"overflow", "fffffffffffffffff\r\n", -1},
	{"size past 2^62", "4000000000000000\r\n", -1},
	{"bare LF after size", "5\nhello\r\n0\r\n\r\n", -1},
	{"bare LF after data", "5\r\nhello\n0\r\n\r\n", -1},
	{"bare CR after size", "5\rhello\r\n0\r\n\r\n", -1},
	{"data longer than size", "5\r\nhello!\r\n0\r\n\r\n", -1},
	{"bare LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n", -1},
	{"NUL in extension", "5;a\x00\r\nhello\r\n0\r\n\r\n", -1},
	{"bare LF ends body", "0\r\n\n", -1},
	{"bare LF in trailer", "0\r\nX: y\n\r\n", -1},
	{"obs-fold in trailer", "0\r\nX: y\r\n z\r\n\r\n", -1},
	{"trailer without colon", "0\r\nX\r\n\r\n", -1},
	{"space before trailer colon", "0\r\nX : y\r\n\r\n", -1},
	{"NUL in trailer", "0\r\nX: \x00\r\n\r\n", -1},
}

func TestChunked(t *testing.T) {
	for _, c := range chunkedCases {
		t.Run(c.name, func(t *testing.T) {
			var s Chunked
			n, done, err := s.Scan([]byte(c.in))
			if c.end < 0 {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("Scan = %d, %v, %v; want ErrUnsupported", n, done, err)
				}
			} else if err != nil || !done || n != c.end {
				t.Fatalf("Scan = %d, %v, %v; want %d, true, nil", n, done, err, c.end)
			} else if n, done, err := s.Scan([]byte("0\r\n\r\n")); n != 0 || !done || err != nil {
				t.Fatalf("Scan after the end = %d, %v, %v; want 0, true, nil", n, done, err)
			}
			// Byte by byte gives the same result, and net/http agrees.
			checkChunked(t, []byte(c.in), bytes.Repeat([]byte{0}, len(c.in)))
		})
	}
}

func TestChunkedBounds(t *testing.T) {
	ext := func(k int) string { return "1;" + strings.Repeat("e", k-2) + "\r\nx\r\n0\r\n\r\n" }
	trailer := func(k int) string { // a trailer section of k bytes
		return "0\r\nX: " + strings.Repeat("v", k-7) + "\r\n\r\n"
	}
	for _, c := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"longest chunk line", ext(maxChunkLine), true},
		{"chunk line too long", ext(maxChunkLine + 1), false},
		{"largest trailer section", trailer(maxTrailer), true},
		{"trailer section too large", trailer(maxTrailer + 1), false},
		// net/http's overhead bound: 1-byte chunks with 100 bytes of
		// extension each owe 100+2-16-2 = 84 bytes a chunk; 16 KiB runs
		// out at the 196th.
		{"overhead within bound", strings.Repeat("1;"+strings.Repeat("e", 98)+"\r\nx\r\n", 195) + "0\r\n\r\n", true},
		{"overhead past bound", strings.Repeat("1;"+strings.Repeat("e", 98)+"\r\nx\r\n", 196) + "0\r\n\r\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, done, err := checkChunked(t, []byte(c.in), []byte{200, 7, 31})
			if c.ok != (err == nil && done && n == len(c.in)) {
				t.Errorf("Scan = %d, %v, %v (of %d bytes), want ok %v", n, done, err, len(c.in), c.ok)
			}
			// Each bound is net/http's: past it, net/http fails too.
			if _, _, gerr := netHTTPBody([]byte(c.in)); !c.ok && gerr == nil {
				t.Errorf("net/http reads the body: the bound is stricter than net/http's")
			}
		})
	}
}

// TestChunkedData encodes random data in random chunks with
// net/http/httputil's writer and checks that Scan ends the body exactly
// at its end and that net/http decodes the same data from it.
func TestChunkedData(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		data := make([]byte, rng.IntN(3000))
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		var enc bytes.Buffer
		w := httputil.NewChunkedWriter(&enc)
		for rest := data; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(700))
			if _, err := w.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(2) == 0 {
			enc.WriteString("X-Sum: 1\r\n")
		}
		enc.WriteString("\r\n")
		body := enc.Bytes()
		splits := make([]byte, 64)
		for i := range splits {
			splits[i] = byte(rng.UintN(256))
		}
		n, done, err := checkChunked(t, append(body, "GET /next"...), splits)
		if err != nil || !done || n != len(body) {
			t.Fatalf("Scan = %d, %v, %v; want %d, true, nil", n, done, err, len(body))
		}
		got, _, err := netHTTPBody(body[:n])
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("net/http decoded %d bytes (%v), want the %d written", len(got), err, len(data))
		}
	}
}
