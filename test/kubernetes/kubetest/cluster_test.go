package kubetest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Without etcd on PATH, StartCluster says which package to install
// (Start turns that into a skip, or a failure under CI=true).
func TestStartClusterWithoutEtcd(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartCluster(context.Background(), Options{Dir: t.TempDir(), APIServerBinary: "/nonexistent"})
	if !errors.Is(err, ErrEtcdMissing) || !strings.Contains(err.Error(), "etcd-server") {
		t.Fatalf("err = %v, want ErrEtcdMissing naming etcd-server", err)
	}
}

// An API server that exits at once is reported with its log, and etcd,
// already started, is stopped.
func TestStartClusterReportsAnAPIServerThatExits(t *testing.T) {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(ErrEtcdMissing)
		}
		t.Skip(ErrEtcdMissing.Error())
	}
	dir := t.TempDir()
	// A stand-in kube-apiserver that fails the way a bad flag does.
	fake := dir + "/kube-apiserver"
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'E1205 00:00:00.000000 1 run.go:72] \"command failed\" err=\"bad flag\"' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// With an hour to get ready, only noticing the exit returns within the
	// test's run, and it says so rather than "not ready".
	_, err = StartCluster(context.Background(), Options{Dir: dir + "/cluster", EtcdBinary: etcd, APIServerBinary: fake, ReadyTimeout: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver exited before it was ready") || !strings.Contains(err.Error(), `err="bad flag"`) {
		t.Fatalf("err = %v", err)
	}
	// No etcd runs on the cluster's data directory any more.
	out, _ := exec.Command("pgrep", "-f", dir+"/cluster/etcd").Output()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("etcd still runs: pids %s", out)
	}
}

// An etcd that finds its port taken is started again on other ports.
func TestStartClusterRetriesATakenPort(t *testing.T) {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(ErrEtcdMissing)
		}
		t.Skip(ErrEtcdMissing.Error())
	}
	dir := t.TempDir()
	// The first run fails as a taken port does, later ones are etcd.
	wrapper := dir + "/etcd"
	script := "#!/bin/sh\nif [ ! -e " + dir + "/failed ]; then touch " + dir + "/failed; echo 'listen tcp 127.0.0.1:1: bind: address already in use' >&2; exit 1; fi\nexec " + etcd + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	fake := dir + "/kube-apiserver" // exits at once: enough to see etcd got healthy
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'E1205 started after etcd' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = StartCluster(context.Background(), Options{Dir: dir + "/cluster", EtcdBinary: wrapper, APIServerBinary: fake})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver exited") || !strings.Contains(err.Error(), "started after etcd") {
		t.Fatalf("err = %v, want the fake kube-apiserver's exit (etcd retried and healthy)", err)
	}
	if _, statErr := os.Stat(dir + "/failed"); statErr != nil {
		t.Fatal("the wrapper never failed once")
	}
}
