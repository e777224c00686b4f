package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The net/http engine carries requests to an HTTP/1.1 group on the lean
// pools: over a single reused connection to the target, bodies of known
// length included, and through net/http's Transport (its own
// connections) what the pools do not carry: a body of unknown length,
// Expect. Either way the target sees the same request.
func TestLeanTransportCarriesAndFallsBack(t *testing.T) {
	up, conns := countingTarget(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s cl=%d te=%v body=%q ua=%q", r.Method, r.URL.RequestURI(), r.ContentLength, r.TransferEncoding, b, r.UserAgent())
	})
	defer up.Close()
	g := proxyTo(t, up, Options{})
	front := httptest.NewServer(g) // the net/http engine
	defer front.Close()
	target := strings.TrimPrefix(up.URL, "http://")
	pool := g.state.Load().upstreams["u"].lean[target]

	do := func(method, path string, body io.Reader, length int64, hdr map[string]string) string {
		t.Helper()
		req, err := http.NewRequest(method, front.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	carried := []struct {
		method, path string
		body         string
		want         string
	}{
		{"GET", "/a?x=1", "", `GET /a?x=1 cl=0 te=[] body="" ua=""`},
		{"POST", "/b", "hello", `POST /b cl=5 te=[] body="hello" ua=""`},
		{"POST", "/c", "", `POST /c cl=0 te=[] body="" ua=""`},
		{"DELETE", "/d", "", `DELETE /d cl=0 te=[] body="" ua=""`},
	}
	for _, c := range carried {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		if got := do(c.method, c.path, body, int64(len(c.body)), map[string]string{"User-Agent": ""}); got != c.want {
			t.Errorf("%s %s: target saw %s, want %s", c.method, c.path, got, c.want)
		}
	}
	pool.mu.Lock()
	open, idle := pool.open, len(pool.idle)
	pool.mu.Unlock()
	if open != 1 || idle != 1 || conns.Load() != 1 {
		t.Fatalf("after %d requests in turn: the pool has %d open (%d idle), the target saw %d connections; want one, reused", len(carried), open, idle, conns.Load())
	}

	// Not carried by the pools: through net/http's Transport, on its own
	// connection.
	if got := do("POST", "/e", io.MultiReader(strings.NewReader("chunk")), -1, nil); !strings.Contains(got, `te=[chunked] body="chunk"`) {
		t.Errorf("a body of unknown length: target saw %s", got)
	}
	if got := do("PUT", "/f", strings.NewReader("xyz"), 3, map[string]string{"Expect": "100-continue"}); !strings.Contains(got, `PUT /f cl=3 te=[] body="xyz"`) {
		t.Errorf("Expect: target saw %s", got)
	}
	if conns.Load() < 2 {
		t.Errorf("the target saw %d connections: the requests the pools do not carry went on the pool's", conns.Load())
	}
}

// A request the wire must not carry (a CR in a field's value) is refused
// by leanTransport: after its body was read, the fallback would have
// sent it empty; without a body, the fallback (net/http's Transport,
// which refuses it too) decides.
func TestLeanTransportRefusesWhatTheWireMustNotCarry(t *testing.T) {
	fellBack := 0
	lt := &leanTransport{
		u: &upstream{lean: map[string]*leanPool{"x:1": {}}},
		fallback: roundTripFunc(func(*http.Request) (*http.Response, error) {
			fellBack++
			return nil, errors.New("refused by the fallback")
		}),
	}
	req, err := http.NewRequest("POST", "http://x:1/", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["X-Bad"] = []string{"a\r\nInjected: 1"}
	if _, err := lt.RoundTrip(req); err == nil || fellBack != 0 {
		t.Errorf("with a body read: err %v, fallback called %d times; want an error and no fallback", err, fellBack)
	}
	req.Body, req.ContentLength = http.NoBody, 0
	if _, err := lt.RoundTrip(req); err == nil || fellBack != 1 {
		t.Errorf("without a body: err %v, fallback called %d times; want the fallback's refusal", err, fellBack)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

// countingTarget starts a target serving h and counts the connections
// it accepts.
func countingTarget(h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(h)
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	return up, &conns
}

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
