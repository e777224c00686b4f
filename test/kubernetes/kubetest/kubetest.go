package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// prebuilt is what Main built: the binaries' paths, or why they failed.
var prebuilt struct {
	done            bool
	apiserver, kctl string
	err             error
}

// Main builds kube-apiserver and kubectl, when the cache does not hold
// them yet, and then runs the tests. Call it from TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
// A cold build takes minutes; done before m.Run, it does not count against
// go test's -timeout (whose alarm starts in m.Run), only against the go
// command's kill timeout one minute later. Without etcd, and CI not true,
// it builds nothing: the tests that need a cluster skip.
func Main(m *testing.M) {
	_, err := exec.LookPath("etcd")
	if err == nil || os.Getenv("CI") == "true" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		prebuilt.apiserver, prebuilt.err = BuildAPIServer(ctx, BuildOptions{Log: os.Stderr})
		if prebuilt.err == nil {
			prebuilt.kctl, prebuilt.err = BuildKubectl(ctx, BuildOptions{Log: os.Stderr})
		}
		prebuilt.done = true
		cancel()
	}
	os.Exit(m.Run())
}

// Start runs a cluster for the test and stops it when the test ends. It
// returns the cluster; its Kubeconfig field is the admin kubeconfig's path.
//
// Without etcd the test is skipped with a message naming the package to
// install, unless CI=true: then it fails, as does a kube-apiserver that
// does not build or start. Without Main, the first call on a machine
// builds kube-apiserver inside the test (minutes, counted against go
// test's -timeout; the go command's output goes to the test log); later
// calls reuse the cached binary.
func Start(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build included
	defer cancel()
	if prebuilt.done && prebuilt.err != nil {
		t.Fatal(prebuilt.err)
	}
	c, err := StartCluster(ctx, Options{Dir: t.TempDir(), APIServerBinary: prebuilt.apiserver, Build: BuildOptions{Log: testWriter{t}}})
	if errors.Is(err, ErrEtcdMissing) && os.Getenv("CI") != "true" {
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("cluster logs (tail):\n%s", c.LogTails())
		}
	})
	return c
}

// Kubectl runs kubectl of Release (BuildKubectl) against the cluster and
// returns its standard output; the test fails if it exits non-zero.
func Kubectl(t testing.TB, c *Cluster, args ...string) string {
	t.Helper()
	out, err := KubectlErr(t, c, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// KubectlErr is Kubectl returning the failure (with kubectl's standard
// error) instead of failing the test.
func KubectlErr(t testing.TB, c *Cluster, args ...string) (string, error) {
	t.Helper()
	bin := prebuilt.kctl
	if bin == "" {
		var err error
		if bin, err = BuildKubectl(context.Background(), BuildOptions{Log: testWriter{t}}); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
