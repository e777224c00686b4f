package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/testbin"
)

// h2specBin finds h2spec: the repository's .bin (make tools), then PATH.
// Without it the test is skipped with a message, or fails under CI=true.
func h2specBin(t *testing.T) string {
	return testbin.Find(t, "h2spec", "`make tools` puts it in .bin")
}

// TestH2spec runs every h2spec case (RFC 7540 and HPACK, strict ones
// included) against the server over TLS and requires all to pass.
func TestH2spec(t *testing.T) {
	bin := h2specBin(t)
	ts := start(t, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "hello")
		}),
		// h2spec's 2 s timeout must not meet the read timeout.
		ReadTimeout: 10 * time.Second,
	})
	host, port, _ := net.SplitHostPort(ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-t", "-k", "-S", "-h", host, "-p", port, "-o", "5")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindSubmatch(out.Bytes())
	if err != nil || summary == nil || string(summary[4]) != "0" || string(summary[3]) != "0" {
		t.Fatalf("h2spec: %v\n%s", err, out.Bytes())
	}
	t.Logf("h2spec: %s", summary[0])
}
