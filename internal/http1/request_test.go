package http1

import (
	"errors"
	"strings"
	"testing"
)

const testMax = 8 << 10

// requestCases are heads in and out of the subset; they also seed
// FuzzParseRequest.
var requestCases = []struct {
	name string
	in   string
	ok   bool // a whole head in the subset (else ErrUnsupported)
}{
	{"minimal", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"body follows", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", true},
	{"chunked any case", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true},
	{"close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n", true},
	{"ows trimmed", "GET / HTTP/1.1\r\nHost: \t a:80 \t\r\nX-Empty:\r\nX-Obs: caf\xe9 \r\n\r\n", true},
	{"escapes", "GET /a%20b/%7e?q=100%&x=%zz HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true},
	{"content-length zero padded", "PUT /x HTTP/1.1\r\nhost: a\r\ncontent-length: 007\r\n\r\n", true},
	{"trailer named", "POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n", true},

	// Smuggling classics and other framing the subset refuses.
	{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false},
	{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", false},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", false},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false},
	{"TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", false},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", false},
	{"CL twice same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false},
	{"CL twice differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false},
	{"CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", false},
	{"CL minus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", false},
	{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", false},
	{"CL space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", false},
	{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", false},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", false},
	{"CL 19 digits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000000\r\n\r\n", false},
	{"CL with underscore", "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n", false},
	{"TE with underscore", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_encoding: chunked\r\n\r\n", false},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", false},
	{"space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", false},
	{"bare LF in field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", false},
	{"bare LF ends head", "GET / HTTP/1.1\r\nHost: a\r\n\n", false},
	{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", false},
	{"CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", false},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", false},
	{"control byte mid-word", "GET / HTTP/1.1\r\nHost: a\r\nX: \x150000000\r\n\r\n", false},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", false},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", false},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", false},
	{"no Host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", false},
	{"two Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", false},
	{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", false},
	{"Host with at", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", false},
	{"Host empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", false},
	{"Host obs-text", "GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n", false},
	{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", false},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", false},
	{"absolute-form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"authority-form", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", false},
	{"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"bad escape", "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"short escape", "GET /a%4?x HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"obs-text target", "GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"Upgrade", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", false},
	{"Connection upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n", false},
	{"Expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false},
	{"Trailer names CL", "POST / HTTP/1.1\r\nHost: a\r\nTrailer: x, content-length\r\nTransfer-Encoding: chunked\r\n\r\n", false},
}

func TestParseRequest(t *testing.T) {
	for _, c := range requestCases {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			n, err := ParseRequest([]byte(c.in), testMax, &r)
			if !c.ok {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("ParseRequest = %d, %v; want ErrUnsupported", n, err)
				}
				return
			}
			if err != nil || n != strings.Index(c.in, "\r\n\r\n")+4 {
				t.Fatalf("ParseRequest = %d, %v; want the head's length %d", n, err, strings.Index(c.in, "\r\n\r\n")+4)
			}
			checkRequest(t, []byte(c.in))
		})
	}
}

func TestParseRequestFields(t *testing.T) {
	in := "POST /a?b HTTP/1.1\r\nHost: \t ex.com:80 \r\nX-Empty:\r\nContent-Length: 12\r\nConnection: x, close\r\n\r\nbody"
	var r Request
	n, err := ParseRequest([]byte(in), testMax, &r)
	if err != nil || n != len(in)-4 {
		t.Fatalf("ParseRequest = %d, %v", n, err)
	}
	got := []string{string(r.Method), string(r.Target), string(r.Host)}
	for _, h := range r.Headers {
		got = append(got, string(h.Name)+"="+string(h.Value))
	}
	want := []string{"POST", "/a?b", "ex.com:80", "Host=ex.com:80", "X-Empty=", "Content-Length=12", "Connection=x, close"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("parsed %q, want %q", got, want)
	}
	if r.ContentLength != 12 || r.Chunked || !r.Close {
		t.Errorf("framing %d %v close %v, want 12 false true", r.ContentLength, r.Chunked, r.Close)
	}

	// Reading another head into r reuses the headers' memory and resets
	// the framing.
	in2 := "GET / HTTP/1.1\r\nHost: b\r\n\r\n"
	if n, err := ParseRequest([]byte(in2), testMax, &r); err != nil || n != len(in2) {
		t.Fatalf("ParseRequest = %d, %v", n, err)
	}
	if len(r.Headers) != 1 || r.ContentLength != -1 || r.Close || string(r.Host) != "b" {
		t.Errorf("second head: %d headers, length %d, close %v, host %q", len(r.Headers), r.ContentLength, r.Close, r.Host)
	}
}

func TestParseRequestIncomplete(t *testing.T) {
	in := "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
	for k := 0; k < len(in); k++ {
		var r Request
		if n, err := ParseRequest([]byte(in[:k]), testMax, &r); n != 0 || err != nil {
			t.Errorf("ParseRequest(%q) = %d, %v; want 0, nil", in[:k], n, err)
		}
	}
	// A bad byte may be refused before the head is whole.
	var r Request
	if _, err := ParseRequest([]byte("G(T / HT"), testMax, &r); !errors.Is(err, ErrUnsupported) {
		t.Errorf("bad method prefix: %v, want ErrUnsupported", err)
	}
}

func TestParseRequestMax(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("y", 100) + "\r\n\r\n"
	var r Request
	if n, err := ParseRequest([]byte(in), len(in), &r); err != nil || n != len(in) {
		t.Errorf("head of exactly max: %d, %v", n, err)
	}
	if _, err := ParseRequest([]byte(in), len(in)-1, &r); !errors.Is(err, ErrUnsupported) {
		t.Errorf("head one byte over max: %v, want ErrUnsupported", err)
	}
	// Incomplete but already at max: refused, not "read more".
	if n, err := ParseRequest([]byte(in[:50]), 50, &r); !errors.Is(err, ErrUnsupported) {
		t.Errorf("incomplete head at max: %d, %v, want ErrUnsupported", n, err)
	}
	if n, err := ParseRequest([]byte(in[:50]), 51, &r); n != 0 || err != nil {
		t.Errorf("incomplete head under max: %d, %v, want 0, nil", n, err)
	}
}

func TestParseRequestMaxHeaders(t *testing.T) {
	head := func(fields int) []byte {
		var b strings.Builder
		b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
		for i := 1; i < fields; i++ {
			b.WriteString("X: y\r\n")
		}
		b.WriteString("\r\n")
		return []byte(b.String())
	}
	var r Request
	if _, err := ParseRequest(head(MaxHeaders), testMax, &r); err != nil {
		t.Errorf("%d fields: %v", MaxHeaders, err)
	}
	if _, err := ParseRequest(head(MaxHeaders+1), testMax, &r); !errors.Is(err, ErrUnsupported) {
		t.Errorf("%d fields: %v, want ErrUnsupported", MaxHeaders+1, err)
	}
}
