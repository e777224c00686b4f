// Package redis starts a real Redis server (the Debian package
// `redis-server`, installed by `make deps`) for end-to-end tests, and holds
// the tests of global rate limits: several engines sharing a limit through
// one Redis, clock skew, Redis killed and restarted mid-load, the
// Cluster slot of a bucket's keys, and a real Redis Cluster (StartCluster:
// three masters, three replicas) with a master killed mid-load, and
// replies lost after Redis ran a take (LossyLink): a take is never sent
// twice. A server or a cluster's nodes can run on a CPU budget of their
// own (LimitCPU), for benchmarks where Redis, not the shared machine, is
// the bottleneck.
package redis

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/freeport"

	goredis "github.com/redis/go-redis/v9"
)

// Server is a redis-server started by a test. Kill and Restart let a test
// take it away and bring it back on the same port.
type Server struct {
	Addr string // 127.0.0.1:PORT

	bin         string
	dir         string
	port        int
	clusterPort int // cluster bus port of a Cluster node; 0 for a standalone server

	mu    sync.Mutex // guards cmd, cpu and cores
	cmd   *exec.Cmd
	cpu   *cpuGroup // the CPU budget's cgroup (LimitCPU); nil without one
	cores float64   // the budget
}

// Start runs redis-server on a free loopback port, without persistence,
// and stops it when the test ends. Without the redis-server binary the
// test is skipped with a message naming the package to install, or fails
// under CI=true (CI installs it).
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server is not installed (Debian package redis-server; `make deps` installs it)")
	}
	s := &Server{bin: bin, dir: t.TempDir(), port: freePort(t)}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	t.Cleanup(s.Kill)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

// missing skips the test for a missing binary, or fails it under CI=true.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// freePort is a loopback port for a server this test starts; see
// internal/freeport for why not port 0.
func freePort(t testing.TB) int {
	t.Helper()
	return freeport.Must(t)
}

// Restart starts the server again on its port (after Kill) and waits
// until it answers PING.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redis: server on %s is running", s.Addr)
	}
	var out bytes.Buffer
	cmd := exec.Command(s.bin, s.serverArgs()...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis: start redis-server: %w", err)
	}
	if s.cpu != nil {
		if err := s.cpu.add(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
	}
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr, MaxRetries: -1, DialerRetries: 1})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.cmd = cmd
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("redis: redis-server on %s did not answer: %w\n%s", s.Addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Signal sends SIGSTOP ("STOP") or SIGCONT ("CONT") to the server, to
// stall it with its connections open.
func (s *Server) Signal(t testing.TB, sig string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatal("redis: server is not running")
	}
	if err := exec.Command("kill", "-"+sig, strconv.Itoa(s.cmd.Process.Pid)).Run(); err != nil {
		t.Fatalf("redis: kill -%s: %v", sig, err)
	}
}

// Client returns a client configured as the agent configures its own:
// context deadlines bound socket I/O and commands are never retried. It
// is closed when the test ends.
func (s *Server) Client(t testing.TB) *goredis.Client { return s.ClientVia(t, nil) }

// ClientVia is Client with its connections made by dial (nil: net.Dial),
// for a test that puts a faulty link between the client and Redis.
func (s *Server) ClientVia(t testing.TB, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{
		Addr:                  s.Addr,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		DialTimeout:           time.Second,
		Dialer:                dial,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// CPUSeconds is the CPU time (user and system) the running server has
// used, from /proc; 0 when it cannot be read.
func (s *Server) CPUSeconds() float64 {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return 0
	}
	return procCPUSeconds(cmd.Process.Pid)
}

// ScriptCalls is how many scripts (EVALSHA and EVAL) the server behind c
// has run since it started or its statistics were last reset (CONFIG
// RESETSTAT), from INFO commandstats.
func ScriptCalls(t testing.TB, c *goredis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("redis: commandstats line %q: %v", line, err)
		}
		n += v
	}
	return n
}

// procCPUSeconds reads utime and stime of pid from /proc/PID/stat.
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks, 100 Hz on Linux
}
