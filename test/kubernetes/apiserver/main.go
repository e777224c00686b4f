// Command apiserver runs a real Kubernetes API server for tests and checks:
// an etcd (Debian package etcd-server) and a kube-apiserver built from the
// Go module proxy (test/kubernetes/kubetest; built once, then cached), both
// on free 127.0.0.1 ports. When the API server answers /readyz it writes an
// admin kubeconfig to -kubeconfig and stays in the foreground until
// SIGINT or SIGTERM, which stop both; they also die with it if it is
// killed.
//
//	go run ./test/kubernetes/apiserver -kubeconfig /tmp/kube/config
//	KUBECONFIG=/tmp/kube/config kubectl get --raw /version
//
// It also builds (once) a kubectl of the same release and logs its path;
// -build-only builds both, prints their paths and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig once the API server is ready (required)")
	dir := flag.String("dir", "", "directory for etcd data, certificates and logs (default: a new temporary directory, removed on exit)")
	etcd := flag.String("etcd", "", "etcd binary (default: etcd on PATH)")
	apiserver := flag.String("kube-apiserver", "", "kube-apiserver binary (default: build "+kubetest.Release+" into the cache, or reuse it)")
	cache := flag.String("cache-dir", "", "where built binaries are kept (default: $FLUXGATE_CACHE_DIR or the user cache dir + /fluxgate)")
	buildOnly := flag.Bool("build-only", false, "build (or find) kube-apiserver and kubectl, print their paths and exit")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *kubeconfig, *dir, *etcd, *apiserver, *cache, *buildOnly); err != nil {
		log.Error("apiserver harness failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, kubeconfig, dir, etcd, apiserver, cache string, buildOnly bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	build := kubetest.BuildOptions{CacheDir: cache, Log: os.Stderr}
	if buildOnly {
		bin, err := kubetest.BuildAPIServer(ctx, build)
		if err != nil {
			return err
		}
		kubectl, err := kubetest.BuildKubectl(ctx, build)
		if err != nil {
			return err
		}
		fmt.Println(bin)
		fmt.Println(kubectl)
		return nil
	}
	if kubeconfig == "" {
		return fmt.Errorf("-kubeconfig is required")
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fluxgate-apiserver-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		dir = tmp
	}
	c, err := kubetest.StartCluster(ctx, kubetest.Options{
		Dir: dir, Kubeconfig: kubeconfig, EtcdBinary: etcd, APIServerBinary: apiserver, Build: build,
	})
	if err != nil {
		return err
	}
	defer c.Stop()
	log.Info("kube-apiserver ready", "release", kubetest.Release, "host", c.Host, "kubeconfig", c.Kubeconfig,
		"startup", c.StartupTime.Round(1e6), "logs", dir)
	// A kubectl of the same release, for the user; the cluster runs
	// without it.
	if kubectl, err := kubetest.BuildKubectl(ctx, build); err != nil {
		log.Warn("no kubectl", "err", err)
	} else {
		log.Info("kubectl of the same release", "path", kubectl)
	}
	select {
	case <-ctx.Done():
		log.Info("stopping kube-apiserver and etcd")
		return nil
	case <-c.Exited():
		return fmt.Errorf("kube-apiserver or etcd exited:\n%s", c.LogTails())
	}
}
