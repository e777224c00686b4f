package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/freeport"

	"github.com/fluxgate/fluxgate/agent"
)

// exampleDir holds the configuration under test.
const exampleDir = "../../examples/nginx"

// The addresses examples/nginx/fluxgate.conf is written for, which the test
// replaces with free loopback ports.
const (
	exampleAgent    = "server 127.0.0.1:8080;"
	exampleUpstream = "server 127.0.0.1:9000;"
	exampleListen   = "listen 127.0.0.1:8000;"
)

// upstream is the application behind nginx; it records what it served.
type upstream struct {
	mu      sync.Mutex
	users   []string // X-User of every request served
	baggage []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.users = append(u.users, r.Header.Get("X-User"))
	u.baggage = append(u.baggage, r.Header.Get("Baggage"))
	u.mu.Unlock()
	_, _ = io.WriteString(w, "hello "+r.Header.Get("X-User")+"\n")
}

func (u *upstream) served() ([]string, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.users...), append([]string(nil), u.baggage...)
}

// freePort is a loopback port for a server this test starts; see
// internal/freeport for why not port 0.
func freePort(t *testing.T) int {
	t.Helper()
	return freeport.Must(t)
}

// startAgent runs an agent with the example's policy on free loopback
// ports and returns its HTTP address.
func startAgent(t *testing.T) string {
	t.Helper()
	policy, err := os.ReadFile(filepath.Join(exampleDir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return startAgentWith(t, policy)
}

// startAgentWith runs an agent with the given policy.
func startAgentWith(t *testing.T, policy []byte) string {
	t.Helper()
	return startAgentConfig(t, policy, func(*agent.Config) {})
}

// startAgentConfig runs an agent with the given policy and configuration
// changes.
func startAgentConfig(t *testing.T, policy []byte, edit func(*agent.Config)) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), policy, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort, cfg.Server.GRPCPort = 0, 0
	cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0 // not the defaults: other tests' agents run at the same time
	cfg.Metrics.Enabled = false
	cfg.Policies.Dir = dir
	edit(&cfg)
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Errorf("stop agent: %v", err)
		}
	})
	return a.Addr(agent.ListenerHTTP).String()
}

// startNginx writes a configuration from examples/nginx into a temp dir,
// pointing at agentAddr and upstreamAddr, runs nginx in the foreground and
// returns its address. edits are further replacements, each of text
// that fluxgate.conf holds once.
func startNginx(t *testing.T, agentAddr, upstreamAddr string, edits ...[2]string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Skip("nginx is not installed (Debian package nginx-light; `make deps` installs it): skipping the nginx end-to-end test")
	}
	src, err := os.ReadFile(filepath.Join(exampleDir, "fluxgate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := string(src)
	for _, r := range append([][2]string{
		{exampleAgent, "server " + agentAddr + ";"},
		{exampleUpstream, "server " + upstreamAddr + ";"},
		{exampleListen, "listen " + listen + ";"},
	}, edits...) {
		if n := strings.Count(conf, r[0]); n != 1 {
			t.Fatalf("examples/nginx/fluxgate.conf: want %q once, found it %d times", r[0], n)
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	dir := t.TempDir()
	nginxDirs.Store(listen, dir)
	main := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body_temp;
    proxy_temp_path %[1]s/proxy_temp;
    fastcgi_temp_path %[1]s/fastcgi_temp;
    uwsgi_temp_path %[1]s/uwsgi_temp;
    scgi_temp_path %[1]s/scgi_temp;
    include %[1]s/fluxgate.conf;
}
`, dir)
	for name, content := range map[string]string{"fluxgate.conf": conf, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", stderr.String(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return listen
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s\n%s", err, stderr.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v", listen, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nginxDirs maps the address of each nginx startNginx ran to its
// directory, which holds its error.log.
var nginxDirs sync.Map

// errorLog returns the error log of the nginx listening on addr.
func errorLog(t *testing.T, addr string) string {
	t.Helper()
	dir, ok := nginxDirs.Load(addr)
	if !ok {
		t.Fatalf("no nginx on %s", addr)
	}
	b, err := os.ReadFile(filepath.Join(dir.(string), "error.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type result struct {
	code   int
	header http.Header
	body   string
}

func get(t *testing.T, url string, header map[string]string) result {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return result{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestNginxAuthRequest(t *testing.T) {
	up := &upstream{}
	app := httptest.NewServer(up)
	t.Cleanup(app.Close)
	agentAddr := startAgent(t)
	nginxAddr := startNginx(t, agentAddr, strings.TrimPrefix(app.URL, "http://"))
	base := "http://" + nginxAddr + "/orders?page=2"
	alice := map[string]string{"X-User": "alice", "X-Tier": "free", "Baggage": "tenant=acme"}

	for i := range 5 {
		r := get(t, base, alice)
		if r.code != 200 || r.body != "hello alice\n" {
			t.Fatalf("alice %d = %d %q", i+1, r.code, r.body)
		}
		if r.header.Get("X-FluxGate-Decision") != "accepted" || r.header.Get("RateLimit-Limit") != "5" ||
			r.header.Get("RateLimit-Remaining") != fmt.Sprint(4-i) {
			t.Fatalf("alice %d headers = %v", i+1, r.header)
		}
	}

	r := get(t, base, alice)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("alice 6 = %d %v %q", r.code, r.header, r.body)
	}
	for k, v := range map[string]string{
		"X-FluxGate-Decision": "rejected", "X-FluxGate-Reason": "rate_limited", "X-FluxGate-Policy": "default/per-user-limit",
		"X-FluxGate-Component": "0", "RateLimit-Limit": "5", "RateLimit-Remaining": "0",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("alice 6: %s = %q, want %q", k, got, v)
		}
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("alice 6: Retry-After = %q", ra)
	}
	if !strings.Contains(r.body, `"reason":"rate_limited"`) {
		t.Errorf("alice 6 body = %q", r.body)
	}

	if r := get(t, base, map[string]string{"X-User": "bob", "X-Tier": "free"}); r.code != 200 || r.body != "hello bob\n" {
		t.Fatalf("bob = %d %q", r.code, r.body)
	}
	if r := get(t, base, map[string]string{"X-User": "alice", "X-Tier": "paid"}); r.code != 200 {
		t.Fatalf("alice on the paid tier = %d %q", r.code, r.body)
	}

	// A 429 is a decision, not an error: nginx logs no error line for it.
	if log := errorLog(t, nginxAddr); strings.Contains(log, "[error]") || strings.Contains(log, "unexpected status") {
		t.Errorf("nginx logged an error for the agent's 429:\n%s", log)
	}

	users, baggage := up.served()
	want := []string{"alice", "alice", "alice", "alice", "alice", "bob", "alice"}
	if strings.Join(users, ",") != strings.Join(want, ",") {
		t.Fatalf("upstream served %v, want %v", users, want)
	}
	// The classifier's labels travel to the upstream in baggage.
	if baggage[0] != "tier=free,user=alice,tenant=acme" || baggage[5] != "tier=free,user=bob" {
		t.Fatalf("upstream baggage = %q", baggage)
	}
}

// With the agent unreachable the example fails open: the request reaches
// the application, and a header says why no decision was made.
func TestNginxAgentDownFailsOpen(t *testing.T) {
	up := &upstream{}
	app := httptest.NewServer(up)
	t.Cleanup(app.Close)
	agentAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	base := "http://" + startNginx(t, agentAddr, strings.TrimPrefix(app.URL, "http://")) + "/orders"
	r := get(t, base, map[string]string{"X-User": "alice", "X-Tier": "free"})
	if r.code != http.StatusOK || r.body != "hello alice\n" {
		t.Fatalf("agent down: %d %v %q, want 200 from the application (fail open)", r.code, r.header, r.body)
	}
	if fo := r.header.Get("X-FluxGate-Fail-Open"); !strings.Contains(fo, "agent unreachable") {
		t.Errorf("agent down: X-FluxGate-Fail-Open = %q, want it to say the agent is unreachable", fo)
	}
	if d := r.header.Get("X-FluxGate-Decision"); d != "" {
		t.Errorf("agent down: X-FluxGate-Decision = %q, want none (no decision was made)", d)
	}
	if users, _ := up.served(); len(users) != 1 {
		t.Errorf("the application served %d requests, want 1", len(users))
	}
}

// The one-line switch the example documents turns failing open into
// failing closed: 503 saying flow control is unavailable, not that it
// rejected the request, and the application sees nothing.
func TestNginxAgentDownFailsClosedWhenSwitched(t *testing.T) {
	up := &upstream{}
	app := httptest.NewServer(up)
	t.Cleanup(app.Close)
	agentAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	failClosed := [2]string{"        return 204;\n", "        return 403;\n"}
	base := "http://" + startNginx(t, agentAddr, strings.TrimPrefix(app.URL, "http://"), failClosed) + "/orders"
	r := get(t, base, nil)
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "flow control unavailable") || !strings.Contains(r.body, "agent unreachable") {
		t.Fatalf("agent down, failing closed: %d %q, want 503 flow control unavailable", r.code, r.body)
	}
	if users, _ := up.served(); len(users) != 0 {
		t.Errorf("the application served %d requests, want none", len(users))
	}
}
