//go:build linux

package loopgrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/looptls"
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

// Shutdown ends ServeTLS: the handshakes in progress end (a client that
// connected and sent nothing is closed), ServeTLS returns, and a
// ServeTLS called after it returns at once, its listener closed.
func TestShutdownEndsServeTLS(t *testing.T) {
	f := startTLS(t, &loopUnary{}, nil)
	if _, err := f.client(t).UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
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
