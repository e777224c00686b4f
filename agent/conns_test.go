package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/metricnames"
)

// connsConfig is testConfig with short connection timeouts and a small
// connection cap per listener.
func connsConfig(t *testing.T) Config {
	cfg := testConfig(t.TempDir())
	cfg.Server.ReadTimeout = 300 * time.Millisecond
	cfg.Server.WriteTimeout = time.Second
	cfg.Server.IdleTimeout = 300 * time.Millisecond
	cfg.Server.MaxConnections = 8
	return cfg
}

// closedWithin reports whether the server closes c within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// A client that sends headers and then stalls its body (slow loris) is
// disconnected after server.read_timeout, on every HTTP port.
func TestStalledBodyIsDisconnected(t *testing.T) {
	a := startAgent(t, connsConfig(t))
	for _, name := range []string{ListenerHTTP, ListenerOTLPHTTP} {
		c, err := net.Dial("tcp", a.Addr(name).String())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\nabc")
		if !closedWithin(t, c, 3*time.Second) {
			t.Errorf("%s: a stalled body is still connected after 3s (read_timeout 300ms)", name)
		}
	}
}

// A keep-alive connection left idle is closed after server.idle_timeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	a := startAgent(t, connsConfig(t))
	for _, name := range []string{ListenerHTTP, ListenerMetrics} {
		c, err := net.Dial("tcp", a.Addr(name).String())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		fmt.Fprintf(c, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if !closedWithin(t, c, 3*time.Second) {
			t.Errorf("%s: an idle keep-alive connection is still open after 3s (idle_timeout 300ms)", name)
		}
	}
}

// With more stalled connections than the cap on the API and OTLP ports,
// health and metrics still answer: metrics at once (their own listener),
// the API port as soon as read_timeout frees a slot.
func TestHealthAnswersWithStalledConnections(t *testing.T) {
	a := startAgent(t, connsConfig(t))
	for _, name := range []string{ListenerHTTP, ListenerOTLPHTTP} {
		for range 40 {
			c, err := net.Dial("tcp", a.Addr(name).String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, url := range []string{
		"http://" + a.Addr(ListenerMetrics).String() + "/metrics",
		a.testURL("/livez"),
		a.testURL("/v1/monitoring/health"),
	} {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("%s with 80 stalled connections: %v", url, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", url, resp.StatusCode)
		}
		t.Logf("%s answered in %v", url, time.Since(start))
	}
}

// A flood of idle connections filling the API port's cap does not keep a
// health probe or a check out: the listener closes the connection idle
// longest to make room, never one busy with a request. (Before, the probe
// waited in the backlog until the read timeout freed a slot: 10 s here.)
func TestIdleFloodMakesRoom(t *testing.T) {
	cfg := connsConfig(t)
	cfg.Server.ReadTimeout = time.Minute // header timeout 10s: a flood holds its slots that long
	cfg.Server.MaxConnections = 4
	a := startAgent(t, cfg)
	addr := a.Addr(ListenerHTTP).String()

	// One connection busy with a request whose body has not all come.
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	fmt.Fprintf(busy, "POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"control_point\":")
	waitBusy(t, a, ListenerHTTP, 1) // its headers are read: it is busy

	// Idle connections fill the rest of the cap, and more keep coming.
	var idle []net.Conn
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		t.Cleanup(func() { _ = c.Close() })
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/livez", "/v1/monitoring/health", "/readyz"} {
		resp, err := client.Get(a.testURL(path))
		if err != nil {
			t.Fatalf("%s with the cap full of idle connections: %v", path, err)
		}
		_ = resp.Body.Close()
	}
	// The busy request still completes.
	fmt.Fprintf(busy, "\"api\"}                    ")
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the busy request was cut to make room: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the busy request: %d", resp.StatusCode)
	}
	closed := 0
	for _, c := range idle {
		if closedWithin(t, c, 100*time.Millisecond) {
			closed++
		}
	}
	if closed == 0 {
		t.Fatal("no idle connection was closed to make room")
	}
	t.Logf("%d of %d idle connections closed to make room", closed, len(idle))
	series := func(name, listener string) float64 {
		return counterValue(t, a, name, metricnames.LabelListener, listener)
	}
	if v := series(metricnames.AgentConnectionsEvictedTotal, ListenerHTTP); v < 1 {
		t.Errorf("%s{listener=%q} = %v after evictions", metricnames.AgentConnectionsEvictedTotal, ListenerHTTP, v)
	}
	if v := series(metricnames.AgentAcceptWaitsTotal, ListenerHTTP); v < 1 {
		t.Errorf("%s{listener=%q} = %v with the cap reached", metricnames.AgentAcceptWaitsTotal, ListenerHTTP, v)
	}
	if v := series(metricnames.AgentMaxConnections, ListenerHTTP); v != 4 {
		t.Errorf("%s{listener=%q} = %v, want 4", metricnames.AgentMaxConnections, ListenerHTTP, v)
	}
	if v := series(metricnames.AgentConnections, ListenerHTTP); v < 1 || v > 4 {
		t.Errorf("%s{listener=%q} = %v, want 1 to 4 (the cap)", metricnames.AgentConnections, ListenerHTTP, v)
	}
	if v := series(metricnames.AgentConnectionsEvictedTotal, ListenerGRPC); v != 0 {
		t.Errorf("%s{listener=%q} = %v: the gRPC listener evicts nothing", metricnames.AgentConnectionsEvictedTotal, ListenerGRPC, v)
	}
}

// An OTLP body announced above 16 MiB is refused with 413 before any of
// it is read.
func TestOversizeOTLPBodyRefusedAtOnce(t *testing.T) {
	a := startAgent(t, connsConfig(t))
	c, err := net.Dial("tcp", a.Addr(ListenerOTLPHTTP).String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", 64<<20)
	_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond)) // under read_timeout
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// The soft file-descriptor limit is raised to the hard one at start.
func TestOpenFilesLimitRaised(t *testing.T) {
	before, ok := conncap.ReadOpenFiles()
	if !ok {
		t.Skip("no RLIMIT_NOFILE on " + runtime.GOOS)
	}
	startAgent(t, connsConfig(t))
	if after, _ := conncap.ReadOpenFiles(); after.Soft != before.Hard {
		t.Fatalf("soft limit %d after start (was %d), want the hard limit %d", after.Soft, before.Soft, before.Hard)
	}
}

// waitBusy waits until n connections of the listener name are serving a
// request (the server read a request's first bytes on each), at most 10s.
func waitBusy(t *testing.T, a *Agent, name string, n int) {
	t.Helper()
	a.mu.Lock()
	k := a.limits[name]
	a.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		busy := k.Busy()
		if busy >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d connections busy after 10s, want %d", name, busy, n)
		}
	}
}
