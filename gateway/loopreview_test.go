//go:build linux

package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Tests of the loop engine written to break it (issue 20, item 5); each
// holds it to what the lean engine does, and most run both engines.

// padHead is head (a status line and fields, each ending in CRLF) with
// an X-Pad field that makes it, the blank line and body size bytes long.
func padHead(head, body string, size int) string {
	const field, end = "X-Pad: ", "\r\n\r\n"
	n := size - len(head) - len(field) - len(end) - len(body)
	return head + field + strings.Repeat("p", n) + end + body
}

// A target that sends bytes after its answer, the answer ending exactly
// where a read of leanBufStart bytes ends: the bytes after it are still
// in the socket when the answer has been relayed, and the loop has not
// been told of them yet when a pipelined request wants a connection at
// once. The connection must not carry that request: its "answer" would
// be the bytes already there (a response desync; another client's, on a
// loop serving many).
func TestLoopDoesNotReuseAConnectionWithBytesAfterTheAnswer(t *testing.T) {
	answers := map[string]string{
		"/204": padHead("HTTP/1.1 204 No Content\r\n", "", leanBufStart),
		"/200": padHead("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "ok", leanBufStart),
	}
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
	target := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if a, ok := answers[req.URL.Path]; ok {
				// One write: the answer and the bytes after it come
				// together. The connection stays open; what comes on
				// it has no other answer.
				_, _ = c.Write([]byte(a + evil))
				_, _ = io.Copy(io.Discard, br)
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"); err != nil {
				return
			}
		}
	})
	for _, engine := range []string{"lean", "loop"} {
		g, err := New(Options{Config: oneUpstream(target), ResponseHeaderTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		addr := serveEngine(t, g, engine)
		for _, path := range []string{"/204", "/200"} {
			raw := "GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
			got := exchangeRaw(t, addr, []byte(raw), nil, false)
			if len(got) != 2 || got[1].Status != http.StatusOK || got[1].Body != "good" {
				t.Errorf("%s, GET %s then GET /after: %s; want the second answered by the target (good)", engine, path, showAnswers(got))
			}
		}
	}
}
