// Package quickstart keeps the README's quickstart true: it runs the
// README's block as written, on free ports, and checks what the README
// says it prints.
package quickstart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/freeport"
)

// block is the first ```sh block of the README's Quickstart section.
func block(t *testing.T, readme string) string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Quickstart")
	if !ok {
		t.Fatal("README has no Quickstart section")
	}
	_, code, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatal("README's Quickstart has no sh block")
	}
	code, _, _ = strings.Cut(code, "```")
	return code
}

// freePort is a loopback port for a server this test starts; see
// internal/freeport for why not port 0.
func freePort(t *testing.T) int {
	t.Helper()
	return freeport.Must(t)
}

func TestQuickstart(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is needed to run the README's quickstart")
		}
		t.Skip("curl is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	code := block(t, filepath.Join(root, "README.md"))

	// The block's first line installs the binaries from the checkout: do
	// that into a temporary GOBIN, and run the rest in a directory that
	// holds what the block copies from the checkout.
	first, rest, _ := strings.Cut(code, "\n")
	if !strings.HasPrefix(first, "go install ") {
		t.Fatalf("the quickstart no longer starts with go install: %q", first)
	}
	gobin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "go", strings.Fields(first)[1:]...)
	install.Dir, install.Env = root, append(os.Environ(), "GOBIN="+gobin)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", first, err, out)
	}
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "examples", "nginx"), 0o755); err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile(filepath.Join(root, "examples", "nginx", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "examples", "nginx", "policy.yaml"), ex, 0o644); err != nil {
		t.Fatal(err)
	}

	// Free ports instead of the defaults the README uses.
	http := freePort(t)
	rest = strings.ReplaceAll(rest, "localhost:8080", fmt.Sprintf("127.0.0.1:%d", http))
	sh := exec.CommandContext(ctx, "bash", "-e", "-c", rest)
	sh.Dir = work
	sh.Env = append(os.Environ(), "PATH="+gobin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FLUXGATE_SERVER_HOST=127.0.0.1",
		fmt.Sprintf("FLUXGATE_SERVER_HTTP_PORT=%d", http),
		fmt.Sprintf("FLUXGATE_SERVER_GRPC_PORT=%d", freePort(t)),
		fmt.Sprintf("FLUXGATE_METRICS_PORT=%d", freePort(t)),
		fmt.Sprintf("FLUXGATE_OTLP_GRPC_PORT=%d", freePort(t)),
		fmt.Sprintf("FLUXGATE_OTLP_HTTP_PORT=%d", freePort(t)))
	out, err := sh.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(work, "quickstart", "agent.log"))
	if err != nil {
		t.Fatalf("the quickstart failed: %v\n%s\nagent log:\n%s", err, out, log)
	}
	got := string(out)
	if !strings.Contains(got, "200 200 200 200 200 429") {
		t.Errorf("the quickstart printed %q, want the README's 200 200 200 200 200 429\nagent log:\n%s", got, log)
	}
	if !regexp.MustCompile(`(?i)x-fluxgate-reason: rate_limited`).MatchString(got) || !regexp.MustCompile(`(?i)retry-after: \d+`).MatchString(got) {
		t.Errorf("the quickstart printed %q, want X-FluxGate-Reason: rate_limited and a Retry-After", got)
	}
}
