package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The lean engine serves plain requests itself, keep-alive and
// pipelined, and hands a connection whose request it does not read to the
// fast engine, which answers it as if it had read it from the start.
func TestLeanServesPlainRequestsAndHandsOverTheRest(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Xff", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Hop", r.Header.Get("X-Hop"))
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	url, ls := serveLean(t, g)
	addr := strings.TrimPrefix(url, "http://")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Two requests in one write (pipelined), then one more.
	_, _ = io.WriteString(c, "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	br := bufio.NewReader(c)
	want := []string{"GET /a?x=1 ", "POST /b hello"}
	for i, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != w {
			t.Errorf("response %d: body %q, want %q", i, b, w)
		}
		if i == 0 {
			if got := resp.Header.Get("X-Xff"); got != "10.0.0.1, 127.0.0.1" {
				t.Errorf("X-Forwarded-For at the target: %q", got)
			}
			if got := resp.Header.Get("X-Hop"); got != "" {
				t.Errorf("a field the client's Connection listed reached the target: %q", got)
			}
		}
	}
	if n := ls.handed.Load(); n != 0 {
		t.Fatalf("%d connections handed over for plain requests", n)
	}
	// HTTP/1.0 is not the lean engine's: the connection goes over, and
	// the answer is the same.
	_, _ = io.WriteString(c, "GET /c HTTP/1.0\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "GET /c " {
		t.Errorf("handed-over request: body %q", b)
	}
	if n := ls.handed.Load(); n != 1 {
		t.Errorf("handed over %d connections, want 1", n)
	}
}
