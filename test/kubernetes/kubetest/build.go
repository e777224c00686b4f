package kubetest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Release is the Kubernetes release BuildAPIServer and BuildKubectl build.
// It is pinned by kubernetes.mod: k8s.io/kubernetes at this tag, and each
// staging module (k8s.io/api, apimachinery, apiserver, client-go,
// component-base, kms, kubectl, …) replaced by its published v0.X.Y,
// because k8s.io/kubernetes' own go.mod points them at ./staging, which a
// dependent module cannot see.
//
// To move to another release: in an empty directory, copy kubernetes.mod
// to go.mod and kubernetes.sum to go.sum, change the version of
// k8s.io/kubernetes and of every replace line (check that each staging
// module's .zip is on the proxy: some, such as sample-controller, are not,
// and are not needed), run
// `go get k8s.io/kubernetes/cmd/kube-apiserver@vX.Y.Z k8s.io/kubernetes/cmd/kubectl@vX.Y.Z`
// (not `go mod tidy`, which wants the test dependencies of every package
// as well), and copy go.mod and go.sum back.
const Release = "v1.37.2"

var (
	//go:embed kubernetes.mod
	buildMod []byte
	//go:embed kubernetes.sum
	buildSum []byte
)

// BuildOptions says where BuildAPIServer keeps its binary.
type BuildOptions struct {
	// CacheDir holds built binaries and their build modules. Default:
	// $FLUXGATE_CACHE_DIR, else the user cache directory
	// ($XDG_CACHE_HOME or ~/.cache) plus /fluxgate.
	CacheDir string
	// Log receives the output of the go command while it builds. Nil
	// discards it.
	Log io.Writer
}

// DefaultCacheDir is where binaries go when BuildOptions.CacheDir is empty.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("FLUXGATE_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kubetest: no cache directory (set FLUXGATE_CACHE_DIR): %w", err)
	}
	return filepath.Join(d, "fluxgate"), nil
}

// BuildAPIServer returns the path of a kube-apiserver binary of Release,
// building it first if the cache does not hold one for the embedded build
// module. Concurrent callers, in this process or others, wait for one
// build (a lock file in the cache directory). A cold build compiles about
// 2,000 packages: minutes on a small machine (see BENCHMARKS.md).
func BuildAPIServer(ctx context.Context, opts BuildOptions) (string, error) {
	return build(ctx, opts, "kube-apiserver")
}

// BuildKubectl is BuildAPIServer for kubectl of the same release (Debian's
// kubernetes-client is 1.20, far outside kubectl's skew policy of one minor
// release). Cold, it adds about 200 packages to kube-apiserver's.
func BuildKubectl(ctx context.Context, opts BuildOptions) (string, error) {
	return build(ctx, opts, "kubectl")
}

// build builds k8s.io/kubernetes/cmd/<name> from the embedded module.
func build(ctx context.Context, opts BuildOptions, name string) (string, error) {
	dir := opts.CacheDir
	if dir == "" {
		var err error
		if dir, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	sum := sha256.New()
	sum.Write(buildMod)
	sum.Write(buildSum)
	key := hex.EncodeToString(sum.Sum(nil))[:12]
	bin := filepath.Join(dir, name+"-"+Release+"-"+key)
	if isExecutable(bin) {
		return bin, nil
	}

	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	defer func() { _ = lock.Close() }() // closing releases the lock
	if err := flock(ctx, lock); err != nil {
		return "", err
	}
	if isExecutable(bin) { // built by whoever held the lock
		return bin, nil
	}

	src := filepath.Join(dir, "kubernetes-src-"+key)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), buildMod, 0o644); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.sum"), buildSum, 0o644); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("kubetest: building %s needs the go command: %w", name, err)
	}
	major, minor, _ := strings.Cut(strings.TrimPrefix(Release, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	const v = "k8s.io/component-base/version."
	ldflags := strings.Join([]string{"-s", "-w",
		"-X", v + "gitVersion=" + Release, "-X", v + "gitMajor=" + major, "-X", v + "gitMinor=" + minor,
		"-X", v + "gitTreeState=clean", "-X", v + "buildDate=1970-01-01T00:00:00Z"}, " ")
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", ldflags, "-o", tmp, "k8s.io/kubernetes/cmd/"+name)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=readonly"))
	if opts.Log != nil {
		cmd.Stdout, cmd.Stderr = opts.Log, opts.Log
		_, _ = fmt.Fprintf(opts.Log, "kubetest: building %s %s into %s (a cold build takes minutes)\n", name, Release, bin)
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("kubetest: build %s %s in %s: %w", name, Release, src, err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	if opts.Log != nil {
		_, _ = fmt.Fprintf(opts.Log, "kubetest: built %s %s in %s\n", name, Release, time.Since(start).Round(time.Second))
	}
	return bin, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// flock takes an exclusive lock on f, giving up when ctx is done.
func flock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("kubetest: lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: waiting for another build: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
