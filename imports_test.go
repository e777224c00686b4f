package fluxgate

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// module is this module's path; its packages are the ones the import
// rules below are about.
const module = "github.com/fluxgate/fluxgate"

// The import graph has no arrow from gateway to agent and none back: the
// gateway owns its configuration and reaches the agent only through
// gateway.Host, and the agent knows no gateway type; what joins them is
// this package. Each rule covers the packages' tests too (go list -test),
// since a test that imports the other side drags it back in. Neither may
// import this package either, which imports both.
func TestImportGraph(t *testing.T) {
	for _, rule := range []struct {
		pkgs      string   // go list pattern
		forbidden []string // packages, with everything under them
	}{
		{"./gateway/...", []string{module + "/agent", module}},
		{"./agent/...", []string{module + "/gateway", module}},
	} {
		for pkg, deps := range listDeps(t, rule.pkgs) {
			for _, dep := range deps {
				for _, f := range rule.forbidden {
					if dep == f || (f != module && strings.HasPrefix(dep, f+"/")) {
						t.Errorf("%s imports %s (directly or through its dependencies); only package fluxgate joins agent and gateway", pkg, dep)
					}
				}
			}
		}
	}
}

// listDeps returns, for each package matching pattern and each of its
// test packages, the module's own packages it depends on, directly or
// not.
func listDeps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	cmd := exec.Command(gobin, "list", "-test", "-f", `{{.ImportPath}}{{range .Deps}}|{{.}}{{end}}`, pattern)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pattern, err, stderr.String())
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "|")
		pkg := fields[0] // a test variant reads "path [path.test]"
		for _, d := range fields[1:] {
			d, _, _ = strings.Cut(d, " ") // the package, of whichever variant
			if d == module || strings.HasPrefix(d, module+"/") {
				deps[pkg] = append(deps[pkg], d)
			}
		}
		if _, ok := deps[pkg]; !ok {
			deps[pkg] = nil
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(deps) == 0 {
		t.Fatalf("go list %s listed no packages", pattern)
	}
	return deps
}
