// Package freeport picks loopback TCP ports for servers that tests start
// in child processes (agents, nginx, Redis, kube-apiserver), which must
// be told a port before they bind it.
//
// Asking the kernel for port 0 and closing the listener hands out a port
// from the ephemeral range, which the kernel goes on to use for the
// local end of outgoing connections too: a suite that opens thousands of
// client connections (test/hostile's floods) can take the port before
// the child binds it ("bind: address already in use"). Pick chooses at
// random below the ephemeral range, where the kernel allocates nothing
// by itself, and checks that the port is free on 127.0.0.1 right now.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// The range Pick draws from when the ephemeral range starts high enough.
const (
	lowest     = 10000
	minimumGap = 2000 // the least room below the ephemeral range worth drawing from
)

var given = struct {
	sync.Mutex
	ports map[int]bool // handed out by this process; bounded by the range
}{ports: map[int]bool{}}

// Pick returns a port on 127.0.0.1 that nothing listens on now and that
// this process has not handed out before.
func Pick() (int, error) {
	lo, hi := drawRange()
	if hi-lo < minimumGap {
		return kernelPort()
	}
	return pick(lo, hi)
}

// pick draws from [lo, hi).
func pick(lo, hi int) (int, error) {
	given.Lock()
	defer given.Unlock()
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if given.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = ln.Close()
		given.ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in [%d, %d) after 200 tries", lo, hi)
}

// drawRange is [lowest, start of the ephemeral range), or an empty range
// when the ephemeral range is unknown or starts too low.
func drawRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, 0
	}
	return lowest, start
}

// kernelPort is the fallback: a port the kernel chose.
func kernelPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// T is the part of testing.TB that Must uses.
type T interface {
	Helper()
	Fatal(args ...any)
}

// Must is Pick for tests: it fails t when no port is found.
func Must(t T) int {
	t.Helper()
	p, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
