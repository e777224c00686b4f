//go:build linux

package loopgrpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/looptls"
	"github.com/fluxgate/fluxgate/internal/looptls/looptlstest"
	"github.com/fluxgate/fluxgate/internal/testbin"
)

// startTLS is start over TLS: the listener is the agent's (certs'
// handshakes on goroutines over looptls.Wrap, under the cap's listener
// when Options.Cap is set), served by ServeTLS; the clients verify the
// server's certificate and agree on h2.
func startTLS(t *testing.T, lu *loopUnary, tune func(*Options)) *fixture {
	return startOn(t, true, lu, tune)
}

// serveTLS builds the TLS listener over ln and the clients' credentials.
func (f *fixture) serveTLS(t *testing.T, ln net.Listener, k *conncap.Cap) net.Listener {
	t.Helper()
	dir := t.TempDir()
	ca := certstest.NewCA(t, "loopgrpc CA")
	certFile, keyFile := ca.Server(t, "loopgrpc.test").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	r, err := certs.New(certs.Options{Server: "test", CertFile: certFile, KeyFile: keyFile, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if k != nil {
		ln = k.Listener(ln)
	}
	f.tls = &tls.Config{RootCAs: ca.Pool(), ServerName: "loopgrpc.test", MinVersion: tls.VersionTLS12}
	f.creds = credentials.NewTLS(f.tls)
	return r.WrappedListener(ln, r.ServerConfig(tls.NoClientCert, tls.VersionTLS12, "h2"), "grpc", looptls.Wrap)
}

// Every h2spec case over TLS (ALPN h2), as TestH2spec runs them on h2c:
// the frames' bytes in records of any size, split and joined as h2spec's
// writes make them.
func TestH2specTLS(t *testing.T) {
	f := startTLS(t, &loopUnary{}, func(o *Options) {
		o.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "hello")
		})
		o.PrefaceTimeout = 10 * time.Second // h2spec's 2 s timeout must not meet it
	})
	if failed, failures, _ := testbin.H2spec(t, f.addr, true); failed != 0 {
		t.Fatalf("h2spec over TLS: %d failed\n%s", failed, failures)
	}
}

// A second ServeTLS fails and closes its listener, the first serving on;
// Shutdown ends ServeTLS: the handshakes in progress end (a client that
// connected and sent nothing is closed), ServeTLS returns, and a
// ServeTLS called after it returns at once, its listener closed.
func TestShutdownEndsServeTLS(t *testing.T) {
	f := startTLS(t, &loopUnary{}, nil)
	c := f.client(t)
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil { // the first ServeTLS serves
		t.Fatal(err)
	}
	second, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.ServeTLS(second); !errors.Is(err, eventloop.ErrServing) {
		t.Errorf("a second ServeTLS: %v, want ErrServing", err)
	}
	if _, err := second.Accept(); err == nil {
		t.Error("a second ServeTLS left its listener open")
	}
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup's check
	case <-time.After(5 * time.Second):
		t.Fatal("ServeTLS still running 5 s after Shutdown")
	}
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a client in its handshake after Shutdown: read %v, want the connection closed", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.ServeTLS(ln); err != nil {
		t.Errorf("ServeTLS after Shutdown: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("ServeTLS after Shutdown left its listener open")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A TLS 1.3 client that reads nothing and sends KeyUpdates (each asks the
// server for one of its own), between frames the Session ignores, is cut:
// the replies count with the frames waiting (the loop stops reading it,
// and WriteTimeout runs), and looptls fails a read once more than outKeep
// bytes of them wait. Before, they grew with what the client sent.
func TestTLSKeyUpdatesOfAClientNotReading(t *testing.T) {
	f := startTLS(t, &loopUnary{}, func(o *Options) {
		o.WriteTimeout = 200 * time.Millisecond
		o.IdleTimeout = time.Minute
	})
	cfg := f.tls.Clone()
	cfg.NextProtos = []string{"h2"}
	nc, r, err := looptlstest.Dial(ctxT(t), f.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var settings bytes.Buffer
	_ = http2.NewFramer(&settings, nil).WriteSettings()
	if _, err := nc.Write(r.Data(append([]byte(http2.ClientPreface), settings.Bytes()...))); err != nil {
		t.Fatal(err)
	}
	switch err := looptlstest.Flood(nc, r, []byte{0, 0, 0, 0xfa, 0, 0, 0, 0, 0} /* a frame of an unknown type: ignored */); {
	case err == nil:
		t.Fatal("a client that reads nothing sent 600,000 KeyUpdates and is still served")
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatal("the server stopped reading a client that reads nothing, and did not cut it within 10 s")
	}
}
