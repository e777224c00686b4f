package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// acceptAll admits every flow and keeps nothing.
type acceptAll struct{}

func (acceptAll) Check(_ context.Context, req *flow.Request, d *flow.Decision) error {
	d.Reset(req.ControlPoint)
	return nil
}

// An HTTP/2 GET through internal/h2 and the direct path, checked at a
// control point, allocates at most 100 objects, client and target (both
// net/http's, in this process) included: 110 before the label maps were
// reused, the request contexts made part of their streams and the
// response writer too (issue 20).
func TestOwnHTTP2Allocations(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{Checker: acceptAll{}})
	addr, _, ccfg := serveLeanTLS(t, g, ownHTTP2(g), nil)
	objects, bytes := allocsPerGet(t, h2Client(t, ccfg), "https://"+addr+"/")
	t.Logf("allocations a request: %d objects, %d bytes", objects, bytes)
	if objects > 100 && !raceEnabled { // the race detector's own allocations count too
		t.Errorf("%d objects a request, want at most 100", objects)
	}
}

// A client that resets its stream while the target has not answered ends
// the round trip: the gateway closes its connection to the target (the
// request context's watch, through internal/h2's context), not after the
// response-head timeout.
func TestOwnHTTP2ResetClosesTheTargetConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan struct{})
	closed := make(chan error, 1)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		accepted <- c
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			closed <- err
			return
		}
		close(received)
		_, err = br.ReadByte() // no answer: wait for the gateway to close
		closed <- err
	}()
	g, err := New(Options{Config: oneUpstream(ln.Addr().String()), Checker: acceptAll{}, ResponseHeaderTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr, _, ccfg := serveLeanTLS(t, g, ownHTTP2(g), nil)
	t.Cleanup(func() { // before the server's shutdown, which waits for the handler
		select {
		case c := <-accepted:
			_ = c.Close()
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/stalled", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := h2Client(t, ccfg).Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-received:
	case err := <-closed:
		t.Fatalf("the target read no request: %v", err)
	}
	cancel() // RST_STREAM CANCEL
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want its cancellation", err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("the target's connection: %v, want EOF", err)
		}
	case <-time.After(20 * time.Second): // a bound on a hang, not a speed
		t.Fatal("the target's connection stayed open after the client reset the stream")
	}
}
