//go:build linux

package loopgrpc

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/testbin"
)

// TestH2spec runs every h2spec case (RFC 7540 and HPACK, strict ones
// included) against a Server with prior knowledge, each request served
// through the bridge to Fallback (h2spec's are not gRPC calls), and
// requires all to pass.
func TestH2spec(t *testing.T) {
	f := start(t, &loopUnary{}, func(o *Options) {
		o.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "hello")
		})
		o.PrefaceTimeout = 10 * time.Second // h2spec's 2 s timeout must not meet it
	})
	if failed, failures, _ := testbin.H2spec(t, f.addr, false); failed != 0 {
		t.Fatalf("h2spec: %d failed\n%s", failed, failures)
	}
}
