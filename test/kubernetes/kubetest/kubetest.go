package kubetest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// prebuilt is what Main built: the binary's path, or why it failed.
var prebuilt struct {
	done bool
	bin  string
	err  error
}

// Main builds kube-apiserver, when the cache does not hold it yet, and then
// runs the tests. Call it from TestMain:
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
		prebuilt.bin, prebuilt.err = BuildAPIServer(ctx, BuildOptions{Log: os.Stderr})
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
	c, err := StartCluster(ctx, Options{Dir: t.TempDir(), APIServerBinary: prebuilt.bin, Build: BuildOptions{Log: testWriter{t}}})
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

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
