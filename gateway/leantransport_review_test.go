package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"testing"
)

// stallingTarget is a scripted target that reads one request head,
// writes answer (maybe nothing, or a head and part of a body) and then
// waits for the gateway to close the connection: got is signalled when
// the request came, closed with true when the gateway closed the
// connection, false when the target's 10 s deadline passed first.
func stallingTarget(t *testing.T, answer string) (addr string, got chan struct{}, closed chan bool) {
	t.Helper()
	got, closed = make(chan struct{}, 1), make(chan bool, 1)
	addr = scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = req.Body.Close()
		if _, err := io.WriteString(c, answer); err != nil {
			return
		}
		got <- struct{}{}
		_, err = io.Copy(io.Discard, br)
		var ne net.Error
		closed <- !(errors.As(err, &ne) && ne.Timeout())
	})
	return addr, got, closed
}

// netEngineTo serves a gateway to addr on the net/http engine (so its
// HTTP/1.1 group is carried by leanTransport) and returns its URL and
// the lean pool to addr.
func netEngineTo(t *testing.T, addr string) (string, *leanPool) {
	t.Helper()
	g, err := New(Options{Config: oneUpstream(addr)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	return front.URL, g.state.Load().upstreams["u"].lean[addr]
}

func poolOpen(p *leanPool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// A client that leaves while the target has not answered, or while the
// body is still coming, ends the exchange with the target at once, as
// net/http's Transport does with a done request context: the gateway
// closes the connection to the target (it cannot carry another request)
// instead of holding it, and the handler, until the target answers or
// the response-head timeout (30 s by default; none for a body) passes.
func TestLeanTransportClientLeaving(t *testing.T) {
	for _, c := range []struct{ name, answer string }{
		{"waiting for the head", ""},
		{"during the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got, closed := stallingTarget(t, c.answer)
			url, pool := netEngineTo(t, addr)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/slow", nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}()
			<-got
			cancel()
			<-done
			if !<-closed {
				t.Fatal("the client left, and the gateway kept its connection to the target open")
			}
			if !eventually(func() bool { return poolOpen(pool) == 0 }) {
				t.Fatalf("the pool counts %d connections open after the one it had was closed", poolOpen(pool))
			}
		})
	}
}

// Informational answers before the final one (103 Early Hints) reach the
// client, as ReverseProxy relays them from net/http's Transport
// (ClientTrace.Got1xxResponse), with their fields.
func TestLeanTransportRelays1xx(t *testing.T) {
	addr := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	url, _ := netEngineTo(t, addr)
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		t.Fatalf("final answer %d %q, want 200 \"ok\"", resp.StatusCode, b)
	}
	if want := "103 </a.css>; rel=preload"; len(got) != 1 || got[0] != want {
		t.Fatalf("the client saw informational answers %q, want [%q]", got, want)
	}
}
