package hostile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/freeport"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

var long = flag.Bool("long", os.Getenv("HOSTILE_LONG") == "1", "bigger counts, for a run by hand (also HOSTILE_LONG=1)")

// pick is n, or longN under -long.
func pick(n, longN int) int {
	if *long {
		return longN
	}
	return n
}

// requireDep fails the test under CI=true and skips it otherwise: a
// missing dependency never makes CI green.
func requireDep(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a missing dependency is a failure)", msg)
	}
	t.Skip(msg)
}

var build struct {
	once sync.Once
	bin  string
	dir  string
	err  error
	dep  string // a missing dependency, when that is why there is no binary
}

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binary returns ./cmd/fluxgate built once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		requireDep(t, "the hostile suite reads /proc/PID/status: Linux only, this is %s", runtime.GOOS)
	}
	build.once.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			goCmd = "/usr/local/go/bin/go"
			if _, serr := os.Stat(goCmd); serr != nil {
				build.dep = "the go command is not on PATH nor in GOROOT: it builds ./cmd/fluxgate"
				return
			}
		}
		build.dir, build.err = os.MkdirTemp("", "fluxgate-hostile-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "fluxgate")
		cmd := exec.Command(goCmd, "build", "-o", build.bin, "github.com/fluxgate/fluxgate/cmd/fluxgate")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/fluxgate: %w\n%s", err, out)
		}
	})
	if build.dep != "" {
		requireDep(t, "%s", build.dep)
	}
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// spec is what a child process is started with.
type spec struct {
	gateway  bool              // `fluxgate gateway` instead of `fluxgate agent`
	probe    bool              // a probe listener (server.probe_port)
	server   string            // extra keys of the server section, "k: v, k: v"
	otlp     string            // extra keys of the otlp section
	extra    string            // more sections of fluxgate.yaml
	policies map[string]string // file name → policy
}

// proc is a running fluxgate child.
type proc struct {
	cmd                *exec.Cmd
	dir                string
	api, grpc, mx      string // host:port of the HTTP API, gRPC and metrics
	probe              string // host:port of the probe listener, or empty
	otlpHTTP, otlpGRPC string
	exited             chan struct{}
	logPath            string
	stopOnce           sync.Once
	grpcConns          []*grpc.ClientConn
	grpcMu             sync.Mutex
}

const configTemplate = `# written by test/hostile
server: {host: 127.0.0.1, http_port: %d, grpc_port: %d%s}
metrics: {port: %d}
otlp: {grpc_port: %d, http_port: %d%s}
policies: {dir: %q}
log: {level: warn}
%s`

// freePort is a loopback port for a server this test starts; see
// internal/freeport for why not port 0.
func freePort(t *testing.T) int {
	t.Helper()
	return freeport.Must(t)
}

// start writes the config and policies into a temporary directory,
// starts the child and waits until /readyz answers 200. The child is
// stopped when the test ends.
//
// The ports are picked free and then handed to the child, so a test
// running in parallel can take one in between: when the child exits
// because a port is in use, start tries again on new ports (three
// times at most).
func start(t *testing.T, s spec) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p, err := launch(t, s)
		if err == nil {
			return p
		}
		if attempt < 3 && strings.Contains(p.logTail(4000), "address already in use") {
			t.Logf("fluxgate lost a port to another test, starting again: %v", err)
			continue
		}
		t.Fatalf("fluxgate: %v\n%s", err, p.logTail(4000))
	}
}

// launch is one attempt of start: the child is running and stopped at
// the end of the test when it returns, ready unless the error says not.
func launch(t *testing.T, s spec) (*proc, error) {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range s.policies {
		if err := os.WriteFile(filepath.Join(pol, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hp, gp, mp, og, oh := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	server, otlp := "", ""
	if s.server != "" {
		server = ", " + s.server
	}
	probePort := 0
	if s.probe {
		probePort = freePort(t)
		server += ", probe_port: " + strconv.Itoa(probePort)
	}
	if s.otlp != "" {
		otlp = ", " + s.otlp
	}
	conf := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, configTemplate, hp, gp, server, mp, og, oh, otlp, pol, s.extra), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	p := &proc{dir: dir, api: addr(hp), grpc: addr(gp), mx: addr(mp), otlpGRPC: addr(og), otlpHTTP: addr(oh),
		exited: make(chan struct{}), logPath: filepath.Join(dir, "fluxgate.log")}
	if s.probe {
		p.probe = addr(probePort)
	}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	sub := "agent"
	if s.gateway {
		sub = "gateway"
	}
	p.cmd = exec.Command(bin, sub, "--config", conf)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start fluxgate %s: %v", sub, err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("fluxgate %s log (%s):\n%s", sub, p.logPath, p.logTail(4000))
		}
	})
	if err := p.waitReady(60 * time.Second); err != nil {
		p.stop()
		return p, fmt.Errorf("%s: %w", sub, err)
	}
	return p, nil
}

func (p *proc) waitReady(d time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := c.Get("http://" + p.api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited while starting: %v", p.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v (last: %w)", d, err)
		}
	}
}

// stop ends the child: SIGTERM, then SIGKILL after 10s.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		p.grpcMu.Lock()
		for _, c := range p.grpcConns {
			_ = c.Close()
		}
		p.grpcMu.Unlock()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// alive fails the test when the child has exited.
func (p *proc) alive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("fluxgate exited: %v\n%s", p.cmd.ProcessState, p.logTail(4000))
	default:
	}
}

func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// checkClient is a new gRPC connection to the check port, closed with
// the child.
func (p *proc) checkClient(t *testing.T) pb.FlowControlServiceClient { return p.checkClientTok(t, "") }

// checkClientTok is checkClient sending token as a bearer token (none
// when empty).
func (p *proc) checkClientTok(t *testing.T, token string) pb.FlowControlServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	c, err := grpc.NewClient(p.grpc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p.grpcMu.Lock()
	p.grpcConns = append(p.grpcConns, c)
	p.grpcMu.Unlock()
	return pb.NewFlowControlServiceClient(c)
}

// status reads a field of /proc/PID/status in KiB (VmRSS, VmHWM).
func (p *proc) status(t *testing.T, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the child's status: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", field, line)
			}
			return kb
		}
	}
	t.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

// rssMiB is the child's resident set now, in MiB.
func (p *proc) rssMiB(t *testing.T) float64 { return float64(p.status(t, "VmRSS")) / 1024 }

// peakMiB is the child's peak resident set (VmHWM), in MiB.
func (p *proc) peakMiB(t *testing.T) float64 { return float64(p.status(t, "VmHWM")) / 1024 }

// openFiles counts the child's file descriptors.
func (p *proc) openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the child's fds: %v", err)
	}
	return len(ents)
}

// scrape returns the child's /metrics body.
func (p *proc) scrape(t *testing.T) []byte {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + p.mx + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return body
}

// metric sums the samples of name in a scrape whose labels contain every
// one of match ("key=\"value\"").
func metric(body []byte, name string, match ...string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, val := line[:sp], line[sp+1:]
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(labels, m)
		}
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			sum += v
		}
	}
	return sum
}

// rssPeak samples the child's VmRSS every 100ms until stopped: VmHWM is
// the peak since start, this is the peak of one phase.
type rssPeak struct {
	stop chan struct{}
	done chan struct{}
	max  float64 // MiB; read after done
}

func (p *proc) samplePeak(t *testing.T) *rssPeak {
	r := &rssPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
			if err == nil {
				for _, line := range strings.Split(string(data), "\n") {
					if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
						kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
						r.max = max(r.max, kb/1024)
					}
				}
			}
			select {
			case <-r.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return r
}

// end stops sampling and returns the phase's peak in MiB.
func (r *rssPeak) end() float64 {
	close(r.stop)
	<-r.done
	return r.max
}

// httpDo sends one request with a generous deadline and returns its
// status, 0 with the error when there was no answer.
func httpDo(ctx context.Context, c *http.Client, method, url string, body io.Reader, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, b, err
	}
	return resp.StatusCode, b, nil
}

// bearer sends a bearer token in the authorization metadata of every
// call, over plain text.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
