package http1

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Random heads built from pieces near the subset's edges, each held to
// net/http (diff_test.go). Byte-level fuzzing seldom assembles several
// framing fields at once; these do it on every run.
var (
	comboStarts = []string{
		"GET / HTTP/1.1", "POST /a?b=%zz HTTP/1.1", "HEAD /%41 HTTP/1.1", "GET /a%2 HTTP/1.1",
		"GET /a?x#y HTTP/1.1", "OPTIONS * HTTP/1.1", "GET / HTTP/1.0", "PRI * HTTP/2.0",
		"HTTP/1.1 200 OK", "HTTP/1.1 204 No Content", "HTTP/1.1 304", "HTTP/1.0 200 OK",
		"HTTP/1.1 100 Continue", "HTTP/1.1 101 Switching", "HTTP/1.1 404 ", "HTTP/1.0 500 x\ty",
	}
	comboNames = []string{
		"Host", "host", "HOST", "Content-Length", "content-length", "Transfer-Encoding",
		"transfer-encoding", "Connection", "connection", "Trailer", "Pragma", "Cache-Control",
		"Upgrade", "Expect", "X-A", "Host ", "Content-Length ", " X", "Keep-Alive",
	}
	comboValues = []string{
		"a", "a:80", "a b", "a/b", "u@a", "", " ", "5", "0", "007", "+5", "-1", "5, 5", "5 5",
		"chunked", "CHUNKED", " chunked ", "chunked, identity", "identity", "gzip", "close",
		"Close, keep-alive", "keep-alive", "upgrade", "x, close ,y", "no-cache", "max-age=0",
		"content-length", "X-Sum, Trailer", "\tv\t", "caf\xe9", "a\x00b", "1000000000000000000",
	}
	comboEnds = []string{"\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r\n ", "\r"}
)

func comboHead(rng *rand.Rand) []byte {
	var b strings.Builder
	b.WriteString(comboStarts[rng.IntN(len(comboStarts))])
	b.WriteString("\r\n")
	for range rng.IntN(6) {
		b.WriteString(comboNames[rng.IntN(len(comboNames))])
		b.WriteString(":")
		if rng.IntN(2) == 0 {
			b.WriteString(" ")
		}
		b.WriteString(comboValues[rng.IntN(len(comboValues))])
		b.WriteString(comboEnds[rng.IntN(len(comboEnds))])
	}
	b.WriteString("\r\n")
	if rng.IntN(2) == 0 {
		b.WriteString("5\r\nhello\r\n0\r\n\r\n")
	}
	return []byte(b.String())
}

func TestCombinations(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	accepted := 0
	for range 100000 {
		b := comboHead(rng)
		var r Request
		var s Response
		if n, _ := ParseRequest(b, testMax, &r); n > 0 {
			accepted++
		}
		if n, _ := ParseResponse(b, testMax, &s); n > 0 {
			accepted++
		}
		checkRequest(t, b)
		checkResponse(t, b)
		if t.Failed() {
			t.Fatalf("on %q", b)
		}
	}
	// The pieces reach into the subset often enough to test something.
	if accepted < 3000 {
		t.Errorf("only %d of 100000 heads accepted", accepted)
	}
	t.Logf("%d of 100000 heads accepted", accepted)
}

// Random chunked bodies from pieces near the framing's edges.
var (
	comboSizes  = []string{"5", "05", "0000000000000005", "00000000000000005", "0x5", " 5", "5 ", "5\t", "+5", "5;", "5;a=b", "5 ;a", "5;a\x00", "6", "4", "", "g"}
	comboLast   = []string{"0", "00", "0;x", "0 ", "0x0"}
	comboEOLs   = []string{"\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n", ""}
	comboTrails = []string{"", "X: y\r\n", "X:y\r\n", "X : y\r\n", " X: y\r\n", "X: y\n", "X\r\n", "X: \x7f\r\n"}
)

func comboBody(rng *rand.Rand) []byte {
	var b strings.Builder
	eol := func() string {
		if rng.IntN(3) > 0 {
			return "\r\n"
		}
		return comboEOLs[rng.IntN(len(comboEOLs))]
	}
	for range rng.IntN(4) {
		b.WriteString(comboSizes[rng.IntN(len(comboSizes))])
		b.WriteString(eol())
		b.WriteString("hello")
		b.WriteString(eol())
	}
	b.WriteString(comboLast[rng.IntN(len(comboLast))])
	b.WriteString(eol())
	for range rng.IntN(3) {
		b.WriteString(comboTrails[rng.IntN(len(comboTrails))])
	}
	b.WriteString(eol())
	if rng.IntN(2) == 0 {
		b.WriteString("GET / HTTP/1.1\r\n\r\n")
	}
	return []byte(b.String())
}

func TestChunkedCombinations(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	done := 0
	splits := make([]byte, 16)
	for range 30000 {
		b := comboBody(rng)
		for i := range splits {
			splits[i] = byte(rng.UintN(256))
		}
		if _, ok, _ := checkChunked(t, b, splits); ok {
			done++
		}
		if t.Failed() {
			t.Fatalf("on %q", b)
		}
	}
	if done < 1000 {
		t.Errorf("only %d of 30000 bodies ended", done)
	}
	t.Logf("%d of 30000 bodies ended", done)
}
