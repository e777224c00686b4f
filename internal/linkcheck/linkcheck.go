// Package linkcheck keeps light binaries and libraries light: a test
// lists what a package links (go list -deps) and fails on what it must
// not, so a stray import that drags in the server shows in CI rather than
// in a user's go.sum.
package linkcheck

import (
	"os/exec"
	"strings"
	"testing"
)

// Module is this module's path.
const Module = "github.com/fluxgate/fluxgate"

// Rule says what the package in the test's directory may link: of this
// module only the packages in Ours, and nothing under the prefixes in
// Heavy (each with a comment saying what it would bring).
type Rule struct {
	Name  string          // what the package is, for the messages ("fluxctl")
	Ours  map[string]bool // this module's packages it may link, itself included
	Heavy []string        // import path prefixes it must not link
}

// Check fails t for every package the current directory's package links
// against r, and logs how many non-standard packages it links.
func Check(t *testing.T, r Rule) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command lists %s's dependencies: %v", r.Name, err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, p := range pkgs {
		if p == Module || strings.HasPrefix(p, Module+"/") {
			if !r.Ours[p] {
				t.Errorf("%s links %s", r.Name, p)
			}
			continue
		}
		for _, h := range r.Heavy {
			if strings.HasPrefix(p, h) {
				t.Errorf("%s links %s", r.Name, p)
			}
		}
	}
	t.Logf("%s links %d non-standard packages", r.Name, len(pkgs))
}
