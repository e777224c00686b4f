// Package testbin finds the real programs tests run (h2spec and the like)
// for a test: in the repository's .bin (where `make tools` puts them),
// then on PATH. A missing program skips the test with a message saying how
// to install it, or fails it under CI=true, where nothing may be skipped.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
