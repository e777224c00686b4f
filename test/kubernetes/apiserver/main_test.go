package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// running is the harness started by a test.
type running struct {
	cmd        *exec.Cmd
	kubeconfig string        // written once the API server is ready
	out        *bytes.Buffer // its output; read only after exited
	exited     chan struct{} // closed when it has exited; err is set
	err        error
}

// harness builds this command and starts it, and returns once it has
// written the kubeconfig.
func harness(t *testing.T) *running {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil && os.Getenv("CI") != "true" {
		t.Skip(kubetest.ErrEtcdMissing.Error())
	}
	// Build (or find) kube-apiserver first (TestMain has, unless it was
	// told not to), so that the wait below is for start-up only.
	if _, err := kubetest.BuildAPIServer(context.Background(), kubetest.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "apiserver")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	kubeconfig := filepath.Join(dir, "kube", "config")
	var out bytes.Buffer
	cmd := exec.Command(bin, "-kubeconfig", kubeconfig, "-dir", filepath.Join(dir, "cluster"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &running{cmd: cmd, kubeconfig: kubeconfig, out: &out, exited: make(chan struct{})}
	exited := r.exited
	go func() { r.err = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(kubeconfig); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("harness exited before writing the kubeconfig:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kubeconfig after 2 minutes:\n%s", out.String())
		}
	}
	return r
}

// children returns the PIDs whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, n)
	}
	return pids
}

// waitGone waits until none of pids runs (a reaped or zombie process
// counts as gone).
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for {
			stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil || strings.Contains(string(stat), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d still runs: %s", pid, stat)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// The harness writes a kubeconfig that reaches the API server; SIGTERM
// stops it and both children with exit status 0.
func TestHarnessServesUntilSIGTERM(t *testing.T) {
	r := harness(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", r.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != kubetest.Release {
		t.Fatalf("server version %s, want %s", v.GitVersion, kubetest.Release)
	}
	kids := children(t, r.cmd.Process.Pid)
	if len(kids) != 2 {
		t.Fatalf("harness has %d children, want etcd and kube-apiserver", len(kids))
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("harness still runs 30s after SIGTERM")
	}
	waitGone(t, kids)
	if r.err != nil || !strings.Contains(r.out.String(), "stopping kube-apiserver and etcd") {
		t.Fatalf("harness exit: %v; output:\n%s", r.err, r.out.String())
	}
}

// Killed outright, the harness takes its children with it (Pdeathsig).
func TestHarnessChildrenDieWithIt(t *testing.T) {
	r := harness(t)
	kids := children(t, r.cmd.Process.Pid)
	if len(kids) != 2 {
		t.Fatalf("harness has %d children, want etcd and kube-apiserver", len(kids))
	}
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, kids)
}
