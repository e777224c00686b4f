// Package testbin finds the real programs tests run (h2spec and the like)
// for a test: in the repository's .bin (where `make tools` puts them),
// then on PATH. A missing program skips the test with a message saying how
// to install it, or fails it under CI=true, where nothing may be skipped.
// H2spec runs h2spec against a server.
package testbin

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// Find returns the path of the program name, or ends the test: skipped,
// with install saying how to get the program, or failed under CI=true.
func Find(t testing.TB, name, install string) string {
	t.Helper()
	if dir, err := os.Getwd(); err == nil {
		for ; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".bin", name)
				if _, err := os.Stat(p); err == nil {
					return p
				}
				break
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := name + " is not installed (" + install + ")"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// H2spec runs every h2spec case (RFC 7540 and HPACK, strict ones
// included) against addr, over TLS (certificates not verified) or with
// prior knowledge over plain TCP, and returns how many failed, the
// failures' report and all of h2spec's output; it fails the test when
// h2spec does not run or reports skipped cases.
func H2spec(t testing.TB, addr string, tls bool) (failed int, failures, out []byte) {
	t.Helper()
	bin := Find(t, "h2spec", "`make tools` puts it in .bin")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-S", "-h", host, "-p", port, "-o", "5"}
	if tls {
		args = append(args, "-t", "-k")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, _ = exec.CommandContext(ctx, bin, args...).CombinedOutput() // exits 1 when a case fails
	summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindSubmatch(out)
	if summary == nil || string(summary[3]) != "0" {
		t.Fatalf("h2spec did not run every case:\n%s", out)
	}
	failed, _ = strconv.Atoi(string(summary[4]))
	if i := bytes.Index(out, []byte("Failures:")); i >= 0 {
		failures = out[i:]
	}
	t.Logf("h2spec: %s", summary[0])
	return failed, failures, out
}
