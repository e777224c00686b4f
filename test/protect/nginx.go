package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The addresses examples/nginx/fluxgate.conf is written for; -front nginx
// replaces each (it must be there once) with the run's own.
var nginxAddrs = [3]string{"server 127.0.0.1:8080;", "server 127.0.0.1:9000;", "listen 127.0.0.1:8000;"}

// nginxMain wraps the example in a main configuration sized for the
// driver's connections: each client connection also opens one to the
// agent and one to the upstream.
const nginxMain = `# written by test/protect
daemon off;
worker_processes auto;
worker_rlimit_nofile 20000;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %[1]s/body_temp;
    proxy_temp_path %[1]s/proxy_temp;
    fastcgi_temp_path %[1]s/fastcgi_temp;
    uwsgi_temp_path %[1]s/uwsgi_temp;
    scgi_temp_path %[1]s/scgi_temp;
    include %[1]s/fluxgate.conf;
}
`

// nginxFront is a running nginx with the example's configuration.
type nginxFront struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startNginx writes dir/nginx.conf and dir/fluxgate.conf (the -nginx-conf
// file with the run's addresses) and starts nginx listening on listen.
func startNginx(dir, listen, agentAPI, upstreamAddr string) (*nginxFront, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, fmt.Errorf("-front nginx: nginx is not installed (Debian package nginx-light; make deps installs it)")
		}
		bin = "/usr/sbin/nginx"
	}
	src, err := os.ReadFile(*nginxConf)
	if err != nil {
		return nil, fmt.Errorf("-nginx-conf: %w", err)
	}
	conf := string(src)
	for i, to := range []string{"server " + agentAPI + ";", "server " + upstreamAddr + ";", "listen " + listen + ";"} {
		if n := strings.Count(conf, nginxAddrs[i]); n != 1 {
			return nil, fmt.Errorf("%s: want %q once, found it %d times", *nginxConf, nginxAddrs[i], n)
		}
		conf = strings.Replace(conf, nginxAddrs[i], to, 1)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, content := range map[string]string{"fluxgate.conf": conf, "nginx.conf": fmt.Sprintf(nginxMain, dir)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	args := []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t: %w: %s", err, out)
	}
	n := &nginxFront{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	return n, nil
}

// stop ends nginx and its workers (its own process group): SIGQUIT would
// wait for the driver's keep-alive connections, so SIGTERM (fast), then
// SIGKILL after 5s.
func (n *nginxFront) stop() {
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
}
