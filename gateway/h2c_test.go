package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c" //nolint:staticcheck // SA1019: as frontend

	"github.com/fluxgate/fluxgate/metricnames"
)

// A connection that sends part of the HTTP/2 client preface and stops is
// closed once the head timeout passes, with nothing written to it and
// nothing handed over: its goroutine is gone (the connection is
// forgotten).
func TestH2CPartialPrefaceTimesOut(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "up") }))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	addr, ls := serveLeanWith(t, g, func(ls *LeanServer) {
		ls.headTimeout = 100 * time.Millisecond
		ls.ServeH2CWith(&http.Server{Handler: h2c.NewHandler(g, &http2.Server{})}) //nolint:staticcheck // SA1019
		ls.ServeHTTP2With(g.NewHTTP2Server(nil))
	})
	closedAfterHalfPreface(t, addr[len("http://"):])
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		ls.mu.Lock()
		n := len(ls.conns)
		ls.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ls.mu.Lock()
	if n := len(ls.conns); n != 0 {
		t.Errorf("%d connections still served after the client was closed", n)
	}
	ls.mu.Unlock()
	for _, r := range []string{metricnames.HandoverH2C, metricnames.HandoverRequest} {
		if n := testutil.ToFloat64(g.metrics.handovers.WithLabelValues(r)); n != 0 {
			t.Errorf("handovers{reason=%s} = %v, want 0", r, n)
		}
	}
}

// closedAfterHalfPreface sends addr the first half of the HTTP/2 client
// preface, "PRI * HTTP/2.0\r\n", and expects the connection closed within
// 10 s with nothing written to it.
func closedAfterHalfPreface(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface[:16]); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the gateway kept the connection open past its head timeout (read %q)", b)
	}
	if len(b) != 0 {
		t.Errorf("the gateway wrote %q to a half preface, want nothing", b)
	}
}
