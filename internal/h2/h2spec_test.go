package h2

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/testbin"
)

// TestH2spec runs every h2spec case (RFC 7540 and HPACK, strict ones
// included) against the server over TLS and requires all to pass.
func TestH2spec(t *testing.T) {
	ts := start(t, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "hello")
		}),
		// h2spec's 2 s timeout must not meet the read timeout.
		ReadTimeout: 10 * time.Second,
	})
	if failed, _, out := testbin.H2spec(t, ts.addr, true); failed != 0 {
		t.Fatalf("h2spec: %d failed\n%s", failed, out)
	}
}
