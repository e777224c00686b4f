package redis

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCPUQuota(t *testing.T) {
	for _, tc := range []struct {
		cores          float64
		period, quota  time.Duration
		wantErrContain string
	}{
		{cores: 0.15, period: 10 * time.Millisecond, quota: 1500 * time.Microsecond},
		{cores: 1, period: 10 * time.Millisecond, quota: 10 * time.Millisecond},
		{cores: 2.5, period: 10 * time.Millisecond, quota: 25 * time.Millisecond},
		// Below 1 ms a quota is refused by the kernel: the period grows.
		{cores: 0.05, period: 20 * time.Millisecond, quota: time.Millisecond},
		{cores: 0.0001, wantErrContain: "below"},
		{cores: 0, wantErrContain: "want a number of cores > 0"},
		{cores: -1, wantErrContain: "want a number of cores > 0"},
	} {
		period, quota, err := cpuQuota(tc.cores)
		if tc.wantErrContain != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContain) {
				t.Errorf("cpuQuota(%v) = %v, %v, %v; want an error containing %q", tc.cores, period, quota, err, tc.wantErrContain)
			}
			continue
		}
		if err != nil || period != tc.period || quota != tc.quota {
			t.Errorf("cpuQuota(%v) = %v, %v, %v; want %v, %v", tc.cores, period, quota, err, tc.period, tc.quota)
		}
	}
}

// TestCPUGroupFiles checks what a budget writes on each cgroup version,
// on directories laid out as the cgroup file systems are.
func TestCPUGroupFiles(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	v1 := t.TempDir()
	write(filepath.Join(v1, "cpu.cfs_quota_us"), "-1\n")
	g, err := newCPUGroup([]cgroupMount{{dir: v1}}, "g", 0.15)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(v1, "g", "cpu.cfs_period_us")); got != "10000" {
		t.Errorf("v1 cpu.cfs_period_us = %q, want 10000", got)
	}
	if got := read(filepath.Join(v1, "g", "cpu.cfs_quota_us")); got != "1500" {
		t.Errorf("v1 cpu.cfs_quota_us = %q, want 1500", got)
	}
	if err := g.add(4242); err != nil || read(filepath.Join(v1, "g", "cgroup.procs")) != "4242" {
		t.Errorf("add: %v; cgroup.procs %q", err, read(filepath.Join(v1, "g", "cgroup.procs")))
	}

	// v2: the parent hands the cpu controller down first.
	v2 := t.TempDir()
	write(filepath.Join(v2, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(filepath.Join(v2, "cgroup.subtree_control"), "memory\n")
	noCPU := t.TempDir()
	write(filepath.Join(noCPU, "cgroup.controllers"), "hugetlb\n")
	missingV1 := filepath.Join(t.TempDir(), "cpu")
	_, err = newCPUGroup([]cgroupMount{{dir: missingV1}, {dir: noCPU, v2: true}, {dir: v2, v2: true}}, "g", 0.25)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(v2, "cgroup.subtree_control")); got != "+cpu" {
		t.Errorf("v2 cgroup.subtree_control written %q, want +cpu", got)
	}
	if got := read(filepath.Join(v2, "g", "cpu.max")); got != "2500 10000" {
		t.Errorf("v2 cpu.max = %q, want \"2500 10000\"", got)
	}

	// Neither: the error says what was tried and why each failed.
	_, err = newCPUGroup([]cgroupMount{{dir: missingV1}, {dir: noCPU, v2: true}}, "g", 0.25)
	if err == nil {
		t.Fatal("no controller: no error")
	}
	for _, want := range []string{"no writable cgroup cpu controller", "v1 at " + missingV1, "v2 at " + noCPU + ": no cpu controller"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %q does not wrap the missing v1 mount's", err)
	}
}

// TestLimitCPU runs a real redis-server on a budget of 0.05 cores: it is
// in its group (after a restart too), a load makes the kernel throttle
// it, and the group is gone when the test ends.
func TestLimitCPU(t *testing.T) {
	var dir string
	t.Run("budget", func(t *testing.T) {
		srv := Start(t)
		if err := srv.LimitCPU(t, 0.05); err != nil {
			if strings.Contains(err.Error(), "no writable cgroup cpu controller") {
				t.Skipf("this machine gives no CPU budget (run as root with a cgroup cpu controller): %v", err)
			}
			t.Fatal(err)
		}
		if err := srv.LimitCPU(t, 0.05); err == nil {
			t.Error("a second budget: no error")
		}
		if got := srv.CPUBudget(); got != 0.05 {
			t.Errorf("CPUBudget = %v, want 0.05", got)
		}
		dir = srv.cpu.dir
		inGroup := func() {
			t.Helper()
			pids, err := srv.cpu.pids()
			if err != nil {
				t.Fatal(err)
			}
			if pid := srv.cmd.Process.Pid; !slices.Contains(pids, pid) {
				t.Errorf("redis-server pid %d not in %s (%v)", pid, dir, pids)
			}
		}
		inGroup()
		srv.Kill()
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		inGroup()

		// Load it until the kernel throttles it: well over 0.05 cores
		// of work from 8 connections.
		c := srv.Client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for ctx.Err() == nil {
					_ = c.Eval(ctx, "local n = 0 for i = 1, 20000 do n = n + i end return n", nil).Err()
				}
			})
		}
		var n int64
		for ctx.Err() == nil {
			var err error
			if n, err = srv.Throttled(); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if n == 0 {
			t.Errorf("%s: nr_throttled still 0 after 20 s of load", dir)
		}
	})
	if dir == "" {
		return
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s left after the test: %v", dir, err)
	}
}
