package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fluxgate/fluxgate/internal/freeport"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configures StartCluster. Only Dir is required.
type Options struct {
	// Dir holds etcd's data, the key material and the logs
	// (etcd.log, kube-apiserver.log); it is created if missing.
	Dir string
	// Kubeconfig is where the admin kubeconfig is written once the API
	// server is ready. Default: Dir/kubeconfig.
	Kubeconfig string
	// EtcdBinary defaults to etcd on PATH (Debian package etcd-server).
	EtcdBinary string
	// APIServerBinary defaults to the one BuildAPIServer builds or finds
	// in its cache.
	APIServerBinary string
	// Build is passed to BuildAPIServer when APIServerBinary is empty.
	Build BuildOptions
	// ReadyTimeout bounds the wait for etcd and then for the API server's
	// /readyz. Default 2m.
	ReadyTimeout time.Duration
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	Host       string // https://127.0.0.1:PORT
	Kubeconfig string // path of the admin kubeconfig
	Dir        string

	// StartupTime is how long the processes took from exec to ready
	// (etcd healthy, then the API server's /readyz answering 200).
	StartupTime time.Duration

	pki       *pki
	etcd, api *process
	stopOnce  sync.Once
}

// process is a child that dies with us (Pdeathsig) and logs to a file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited; err is set
	err  error
}

// errPortTaken wraps the error of a process that exited because its port
// was taken.
var errPortTaken = errors.New("kubetest: port taken")

// ErrEtcdMissing is returned when no etcd binary is found.
var ErrEtcdMissing = errors.New("kubetest: etcd is not installed (Debian package etcd-server; `make deps` installs it)")

// StartCluster starts etcd and kube-apiserver on free loopback ports and
// returns when the API server answers /readyz and the kubeconfig is
// written. On error nothing is left running.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("kubetest: Options.Dir is required")
	}
	if opts.Kubeconfig == "" {
		opts.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	etcdBin := opts.EtcdBinary
	if etcdBin == "" {
		var err error
		if etcdBin, err = exec.LookPath("etcd"); err != nil {
			return nil, ErrEtcdMissing
		}
	}
	apiBin := opts.APIServerBinary
	if apiBin == "" {
		var err error
		if apiBin, err = BuildAPIServer(ctx, opts.Build); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	certs, err := newPKI(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("kubetest: generate certificates: %w", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	var c *Cluster
	// A free port is found by binding :0 and closing it, so another
	// process can take it before etcd or the API server binds it: then
	// start again on new ports, a few times.
	for attempt := 1; ; attempt++ {
		c = &Cluster{Dir: opts.Dir, Kubeconfig: opts.Kubeconfig, pki: certs}
		err := c.start(ctx, etcdBin, apiBin)
		if err == nil {
			break
		}
		c.Stop()
		if attempt == 3 || !errors.Is(err, errPortTaken) {
			return nil, err
		}
		if err := os.RemoveAll(filepath.Join(opts.Dir, "etcd")); err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
	}
	c.StartupTime = time.Since(start)
	if err := c.writeKubeconfig(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, etcdBin, apiBin string) error {
	etcdPort, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	c.etcd, err = startProcess("etcd", filepath.Join(c.Dir, "etcd.log"), etcdBin,
		"--name", "kubetest",
		"--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:0",
		"--log-level", "warn", "--logger", "zap")
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, c.etcd, http.DefaultClient, etcdURL+"/health"); err != nil {
		return err
	}

	apiPort, err := freePort()
	if err != nil {
		return err
	}
	c.Host = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	p := c.pki.path
	c.api, err = startProcess("kube-apiserver", filepath.Join(c.Dir, "kube-apiserver.log"), apiBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file", p("server.crt"),
		"--tls-private-key-file", p("server.key"),
		"--client-ca-file", p("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p("sa.pub"),
		"--service-account-signing-key-file", p("sa.key"),
		"--service-cluster-ip-range", "10.0.0.0/24",
		// The endpoints of the kubernetes Service cannot be a loopback
		// address, and nothing here needs them.
		"--endpoint-reconciler-type", "none",
		"--authorization-mode", "RBAC",
		// No controller manager creates service accounts' tokens.
		"--disable-admission-plugins", "ServiceAccount",
		"--profiling=false",
		"--v", "1")
	if err != nil {
		return err
	}
	hc, err := c.adminHTTPClient()
	if err != nil {
		return err
	}
	return c.waitReady(ctx, c.api, hc, c.Host+"/readyz")
}

// waitReady polls url until it answers 200, the process exits or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, pr *process, hc *http.Client, url string) error {
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-pr.done:
			exit := pr.err
			if exit == nil {
				exit = errors.New("exit status 0")
			}
			err := fmt.Errorf("kubetest: %s exited before it was ready (%w); log %s:\n%s", pr.name, exit, pr.log, errorLines(pr.log))
			if data, _ := os.ReadFile(pr.log); bytes.Contains(data, []byte("address already in use")) {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("kubetest: %s not ready at %s: %w (last answer: %s); log %s:\n%s", pr.name, url, ctx.Err(), last, pr.log, tail(pr.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The child gets SIGKILL when the thread that started it goes away,
	// so a killed test or harness leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	pr := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		_ = f.Close()
		close(pr.done)
	}()
	return pr, nil
}

// stop sends SIGTERM, then SIGKILL after grace.
func (pr *process) stop(grace time.Duration) {
	if pr == nil {
		return
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(grace):
		_ = pr.cmd.Process.Kill()
		<-pr.done
	}
}

// Stop stops the API server, then etcd. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.api.stop(15 * time.Second)
		c.etcd.stop(10 * time.Second)
	})
}

// Exited is closed when the API server or etcd has exited.
func (c *Cluster) Exited() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		select {
		case <-c.api.done:
		case <-c.etcd.done:
		}
		close(ch)
	}()
	return ch
}

// APIServerLog is the path of the API server's log.
func (c *Cluster) APIServerLog() string { return filepath.Join(c.Dir, "kube-apiserver.log") }

// EtcdLog is the path of etcd's log.
func (c *Cluster) EtcdLog() string { return filepath.Join(c.Dir, "etcd.log") }

// LogTails returns the last error lines (or the end) of both processes'
// logs, for error reports.
func (c *Cluster) LogTails() string {
	return "== " + c.APIServerLog() + "\n" + errorLines(c.APIServerLog()) + "\n== " + c.EtcdLog() + "\n" + errorLines(c.EtcdLog())
}

// RESTConfig returns a client-go configuration with admin credentials.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: c.Host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCert,
			KeyData:  c.pki.adminKey,
		},
		QPS:   -1, // no client-side rate limit: tests measure the server
		Burst: -1,
	}
}

func (c *Cluster) adminHTTPClient() (*http.Client, error) {
	cert, err := tls.X509KeyPair(c.pki.adminCert, c.pki.adminKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}}, nil
}

// writeKubeconfig writes the admin kubeconfig atomically (a reader never
// sees half a file).
func (c *Cluster) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.pki.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.pki.adminCert, ClientKeyData: c.pki.adminKey}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("kubetest: kubeconfig: %w", err)
	}
	if dir := filepath.Dir(c.Kubeconfig); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}
	tmp := c.Kubeconfig + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	if err := os.Rename(tmp, c.Kubeconfig); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return nil
}

func freePort() (int, error) { return freeport.Pick() }

// errorLines returns the last error lines (klog E and F, or etcd's
// "level":"error"/"fatal") of a log file, or its tail if it has none.
func errorLines(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if len(l) > 1 && (l[0] == 'E' || l[0] == 'F') && l[1] >= '0' && l[1] <= '9' ||
			strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"fatal"`) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return tail(path)
	}
	if len(out) > 10 {
		out = out[len(out)-10:]
	}
	return strings.Join(out, "\n")
}

// tail returns the last 40 lines or so of a log file.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}
