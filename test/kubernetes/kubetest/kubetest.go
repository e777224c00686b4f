package kubetest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// Start runs a cluster for the test and stops it when the test ends. It
// returns the cluster; its Kubeconfig field is the admin kubeconfig's path.
//
// Without etcd the test is skipped with a message naming the package to
// install, unless CI=true: then it fails, as does a kube-apiserver that
// does not build or start. The first call on a machine builds
// kube-apiserver (minutes; the go command's output goes to the test log);
// later calls reuse the cached binary.
func Start(t testing.TB) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a cold build included
	defer cancel()
	c, err := StartCluster(ctx, Options{Dir: t.TempDir(), Build: BuildOptions{Log: testWriter{t}}})
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
