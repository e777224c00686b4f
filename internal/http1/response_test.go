package http1

import (
	"errors"
	"strings"
	"testing"
)

// responseCases are heads in and out of the subset; they also seed
// FuzzParseResponse. get and head are BodyLength for a GET and a HEAD.
var responseCases = []struct {
	name      string
	in        string
	ok        bool
	get, head int64
	close     bool
}{
	{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, 5, BodyNone, false},
	{"zero length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, BodyNone, BodyNone, false},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true, BodyChunked, BodyNone, false},
	{"to close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", true, BodyToClose, BodyNone, false},
	{"no reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", true, 1, BodyNone, false},
	{"empty reason", "HTTP/1.1 404 \r\nContent-Length: 1\r\n\r\n", true, 1, BodyNone, false},
	{"reason with spaces", "HTTP/1.1 500 Internal  Server Error\r\nContent-Length: 1\r\n\r\n", true, 1, BodyNone, false},
	{"204 with length", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", true, BodyNone, BodyNone, false},
	{"304", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", true, BodyNone, BodyNone, false},
	{"100", "HTTP/1.1 100 Continue\r\n\r\n", true, BodyNone, BodyNone, false},
	{"1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", true, 2, BodyNone, true},
	{"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n", true, 2, BodyNone, false},
	{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", true, 2, BodyNone, true},
	{"upgrade offered", "HTTP/1.1 200 OK\r\nUpgrade: h2\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\n", true, 2, BodyNone, false},

	{"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0, false},
	{"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, 0, false},
	{"TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0, false},
	{"CL twice", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, 0, 0, false},
	{"CL plus", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false, 0, 0, false},
	{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, 0, 0, false},
	{"status 99", "HTTP/1.1 099 X\r\n\r\n", false, 0, 0, false},
	{"status 600", "HTTP/1.1 600 X\r\n\r\n", false, 0, 0, false},
	{"status 4 digits", "HTTP/1.1 2000 OK\r\n\r\n", false, 0, 0, false},
	{"status sign", "HTTP/1.1 +20 OK\r\n\r\n", false, 0, 0, false},
	{"two spaces", "HTTP/1.1  200 OK\r\n\r\n", false, 0, 0, false},
	{"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", false, 0, 0, false},
	{"HTTP/2", "HTTP/2 200 OK\r\n\r\n", false, 0, 0, false},
	{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", false, 0, 0, false},
	{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n", false, 0, 0, false},
	{"NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", false, 0, 0, false},
	{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", false, 0, 0, false},
	{"Trailer names TE", "HTTP/1.1 200 OK\r\nTrailer: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 0, false},
}

func TestParseResponse(t *testing.T) {
	for _, c := range responseCases {
		t.Run(c.name, func(t *testing.T) {
			var r Response
			n, err := ParseResponse([]byte(c.in), testMax, &r)
			if !c.ok {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("ParseResponse = %d, %v; want ErrUnsupported", n, err)
				}
				return
			}
			if want := strings.Index(c.in, "\r\n\r\n") + 4; err != nil || n != want {
				t.Fatalf("ParseResponse = %d, %v; want %d", n, err, want)
			}
			if get, head := r.BodyLength(false), r.BodyLength(true); get != c.get || head != c.head || r.Close != c.close {
				t.Errorf("body length %d (GET), %d (HEAD), close %v; want %d, %d, %v", get, head, r.Close, c.get, c.head, c.close)
			}
			checkResponse(t, []byte(c.in))
		})
	}
}

func TestParseResponseIncomplete(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
	for k := 0; k < len(in); k++ {
		var r Response
		if n, err := ParseResponse([]byte(in[:k]), testMax, &r); n != 0 || err != nil {
			t.Errorf("ParseResponse(%q) = %d, %v; want 0, nil", in[:k], n, err)
		}
	}
	var r Response
	if _, err := ParseResponse([]byte(in), len(in)-1, &r); !errors.Is(err, ErrUnsupported) {
		t.Errorf("head over max: %v, want ErrUnsupported", err)
	}
}
