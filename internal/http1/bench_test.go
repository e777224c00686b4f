package http1

import "testing"

// A browser's request (8 fields) and an nginx-like response (9 fields).
const (
	benchRequest = "GET /api/v1/items?id=42&sort=desc HTTP/1.1\r\n" +
		"Host: shop.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
		"Connection: keep-alive\r\n" +
		"Cookie: session=4f9c2a7e1b; theme=dark\r\n" +
		"Cache-Control: max-age=0\r\n\r\n"
	benchResponse = "HTTP/1.1 200 OK\r\n" +
		"Server: nginx/1.26.2\r\n" +
		"Date: Sat, 05 Dec 2026 10:00:00 GMT\r\n" +
		"Content-Type: application/json; charset=utf-8\r\n" +
		"Content-Length: 1234\r\n" +
		"Connection: keep-alive\r\n" +
		"Cache-Control: no-cache\r\n" +
		"Vary: Accept-Encoding\r\n" +
		"ETag: \"5f3a-1b2c3d4e\"\r\n" +
		"X-Request-Id: 0b7e5c9a-1d2f-4e3a-9b8c-7d6e5f4a3b2c\r\n\r\n"
)

func BenchmarkParseRequest(b *testing.B) {
	in := []byte(benchRequest)
	var r Request
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := ParseRequest(in, 8<<10, &r); n != len(in) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	in := []byte(benchResponse)
	var r Response
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := ParseResponse(in, 8<<10, &r); n != len(in) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkChunked(b *testing.B) {
	in := []byte("400\r\n" + string(make([]byte, 1024)) + "\r\n" + "1a;ext=1\r\n" + string(make([]byte, 26)) + "\r\n0\r\n\r\n")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var c Chunked
		if n, done, err := c.Scan(in); n != len(in) || !done || err != nil {
			b.Fatal(n, done, err)
		}
	}
}
