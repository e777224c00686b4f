package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The -bench driver: every contender is a child process on a free
// loopback port, loaded in turn by h2load (-conns TLS connections on two
// threads, one stream a connection, then ten), -reps times, interleaved;
// each server's CPU time (user and system, its children's included) is
// read from /proc around each run and divided by the requests answered.

var (
	reps     = flag.Int("reps", 3, "with -bench: interleaved repetitions")
	duration = flag.Duration("duration", 3*time.Second, "with -bench: length of one h2load run")
	conns    = flag.Int("conns", 50, "with -bench: h2load connections")
)

// contenders in the order each repetition runs them.
var contenders = []string{"h2lean-static", "net-static", "nginx-static", "h2lean-proxy", "h2lean-proxy-gr", "net-proxy", "nginx-proxy"}

const benchNginxConf = `daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate %[2]s; ssl_certificate_key %[3]s;
  keepalive_requests 1000000000;
  upstream app { server %[4]s; keepalive 128; }
  server {
    listen %[5]s ssl http2;
    location / { default_type text/plain; return 200 "%[6]s"; }
  }
  server {
    listen %[7]s ssl http2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`

func runBench() error {
	for _, tool := range []string{"h2load", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil && !(tool == "nginx" && fileExists("/usr/sbin/nginx")) {
			return fmt.Errorf("%s is not installed (`make deps`: nghttp2-client, nginx-light)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "fluxgate-h2lean-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	certPEM, keyPEM, err := selfSignedPEM()
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	gwbench := filepath.Join(dir, "gwbench")
	build := exec.Command("go", "build", "-o", gwbench, "./test/gwbench")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build test/gwbench (run from the repository's root): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	pids := map[string]int{}
	start := func(name string, cmd *exec.Cmd) error {
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		pids[name] = cmd.Process.Pid
		stops = append(stops, func() { _ = cmd.Process.Signal(syscall.SIGTERM); _, _ = cmd.Process.Wait() })
		return nil
	}
	up := freeAddr()
	if err := start("upstream", exec.Command(gwbench, "-serve-upstream", up+"=0s")); err != nil {
		return err
	}
	urls := map[string]string{}
	for name, args := range map[string][]string{
		"h2lean-static":   {"-mode", "static"},
		"h2lean-proxy":    {"-mode", "proxy"},
		"h2lean-proxy-gr": {"-mode", "proxy", "-streams", "goroutine"},
		"net-static":      {"-mode", "netstatic"},
		"net-proxy":       {"-mode", "netproxy"},
	} {
		addr := freeAddr()
		args = append(args, "-listen", addr, "-upstream", up, "-cert", certFile, "-key", keyFile, "-pool", strconv.Itoa(*poolSize))
		if err := start(name, exec.Command(self, args...)); err != nil {
			return err
		}
		urls[name] = "https://" + addr + "/"
	}
	ngDir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(ngDir, "tmp"), 0o755); err != nil {
		return err
	}
	ngStatic, ngProxy := freeAddr(), freeAddr()
	conf := fmt.Sprintf(benchNginxConf, ngDir, certFile, keyFile, up, ngStatic, strings.TrimSuffix(string(staticBody), "\n")+`\n`, ngProxy)
	if err := os.WriteFile(filepath.Join(ngDir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	ngBin, err := exec.LookPath("nginx")
	if err != nil {
		ngBin = "/usr/sbin/nginx"
	}
	if err := start("nginx", exec.Command(ngBin, "-p", ngDir, "-e", filepath.Join(ngDir, "error.log"), "-c", filepath.Join(ngDir, "nginx.conf"))); err != nil {
		return err
	}
	pids["nginx-static"], pids["nginx-proxy"] = pids["nginx"], pids["nginx"]
	urls["nginx-static"], urls["nginx-proxy"] = "https://"+ngStatic+"/", "https://"+ngProxy+"/"
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	for _, name := range contenders {
		if err := waitH2(urls[name], roots, 30*time.Second); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	res, err := measure(urls, pids)
	if err != nil {
		return err
	}
	res.print()
	return nil
}

// benchKey names a measurement: a contender at a number of streams a connection.
type benchKey struct {
	name    string
	streams int
}

// results holds each measurement's samples: req/s, and CPU µs a request.
type results struct{ rps, user, sys map[benchKey][]float64 }

// measure runs h2load -reps times on every contender, one stream a
// connection then ten, interleaved.
func measure(urls map[string]string, pids map[string]int) (*results, error) {
	res := &results{rps: map[benchKey][]float64{}, user: map[benchKey][]float64{}, sys: map[benchKey][]float64{}}
	for rep := range *reps {
		for _, m := range []int{1, 10} {
			// Rotate the order each repetition, so that no contender always
			// follows the same one.
			order := slices.Concat(contenders[rep%len(contenders):], contenders[:rep%len(contenders)])
			for _, name := range order {
				before := cpuOf(pids[name])
				r, n, err := h2load(urls[name], *conns, m, *duration)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				used := cpuOf(pids[name]).minus(before)
				k := benchKey{name, m}
				res.rps[k] = append(res.rps[k], r)
				res.user[k] = append(res.user[k], used.user*1e6/n)
				res.sys[k] = append(res.sys[k], used.sys*1e6/n)
				log.Printf("rep %d -m %-2d %-16s %8.0f req/s  CPU %5.1f + %5.1f µs a request", rep+1, m, name, r, used.user*1e6/n, used.sys*1e6/n)
			}
		}
	}
	return res, nil
}

// print writes the medians as a Markdown table, each contender against
// nginx doing the same (return 200, or proxy_pass).
func (res *results) print() {
	fmt.Printf("\nh2load -t2 -c%d -D%s, %d repetitions interleaved; medians (CPU µs a request: user + system = total)\n\n", *conns, *duration, *reps)
	fmt.Println("| contender | streams | req/s | × nginx | CPU µs a request | × nginx CPU |")
	fmt.Println("|---|---|---|---|---|---|")
	rps, user, sys := res.rps, res.user, res.sys
	for _, m := range []int{1, 10} {
		for _, name := range contenders {
			k := benchKey{name, m}
			ref := benchKey{"nginx-proxy", m}
			if strings.HasSuffix(name, "static") {
				ref.name = "nginx-static"
			}
			u, s := median(user[k]), median(sys[k])
			ru, rs := median(user[ref]), median(sys[ref])
			fmt.Printf("| %s | %d | %.0f | %.2f | %.1f + %.1f = %.1f | %.2f |\n", name, m, median(rps[k]), median(rps[k])/median(rps[ref]), u, s, u+s, (u+s)/(ru+rs))
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// waitH2 waits until url answers 200 over HTTP/2, verified with roots.
func waitH2(url string, roots *x509.CertPool, d time.Duration) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK && resp.ProtoMajor == 2 {
				return nil
			}
			err = fmt.Errorf("%s over %s", resp.Status, resp.Proto)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	h2FinishedRe = regexp.MustCompile(`(?m)^finished in \S+, ([0-9.]+) req/s`)
	h2RequestsRe = regexp.MustCompile(`(?m)^requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2ProtoRe    = regexp.MustCompile(`(?m)^Application protocol: h2$`)
)

var errH2Load = errors.New("h2load run not clean")

// h2load runs h2load against rawURL and returns req/s and the requests
// that succeeded; a run that did not negotiate h2 or had a request fail
// is an error.
func h2load(rawURL string, c, m int, d time.Duration) (rps, n float64, err error) {
	out, err := exec.Command("h2load", "-t2", "-c"+strconv.Itoa(c), "-m"+strconv.Itoa(m), "-D"+strconv.Itoa(max(1, int(d.Seconds()))), rawURL).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("h2load: %w: %s", err, out)
	}
	f, r := h2FinishedRe.FindSubmatch(out), h2RequestsRe.FindSubmatch(out)
	if f == nil || r == nil || !h2ProtoRe.Match(out) {
		return 0, 0, fmt.Errorf("%w: %s", errH2Load, out)
	}
	if string(r[2]) != "0" || string(r[3]) != "0" || string(r[4]) != "0" {
		return 0, 0, fmt.Errorf("%w: %s failed, %s errored, %s timed out", errH2Load, r[2], r[3], r[4])
	}
	rps, _ = strconv.ParseFloat(string(f[1]), 64)
	n, _ = strconv.ParseFloat(string(r[1]), 64)
	return rps, n, nil
}

// cpuTimes is a process tree's CPU time, seconds.
type cpuTimes struct{ user, sys float64 }

func (c cpuTimes) minus(o cpuTimes) cpuTimes { return cpuTimes{c.user - o.user, c.sys - o.sys} }

// cpuOf reads the CPU time of pid and of its children (nginx's workers)
// from /proc/PID/stat, in USER_HZ (100) ticks.
func cpuOf(pid int) cpuTimes {
	var total cpuTimes
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			continue
		}
		self, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		ppid, _ := strconv.Atoi(fields[1])
		if self != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseFloat(fields[11], 64)
		st, _ := strconv.ParseFloat(fields[12], 64)
		total.user += ut / 100
		total.sys += st / 100
	}
	return total
}
