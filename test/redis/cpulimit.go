package redis

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A CPU budget for a Server: the server runs in a cgroup of its own whose
// CFS quota lets it use at most F cores, as a Redis on its own smaller
// machine would. On a machine where every node, the agent and the load
// driver share a few cores, it is how a benchmark makes Redis the
// bottleneck while the agent still has CPU to spare, so that more masters
// can give more decisions a second (BenchmarkRedisClusterScaling).
//
// The period is short (cpuPeriod, 10 ms): a node that used its quota waits
// for the next period, so a throttled node stalls a few milliseconds at a
// time, not the 100 ms of the kernel's default period. Both cgroup
// versions are used: v1's cpu controller (cpu.cfs_period_us and
// cpu.cfs_quota_us, mounted at /sys/fs/cgroup/cpu) and v2's (cpu.max, at
// /sys/fs/cgroup/unified or /sys/fs/cgroup). It needs root, or at least a
// writable controller.

// cpuPeriod is the CFS period of a budget; longer only when the quota
// would fall below the kernel's 1 ms minimum.
const (
	cpuPeriod   = 10 * time.Millisecond
	cpuMinQuota = time.Millisecond
)

// cgroupMount is where a cpu controller may be mounted.
type cgroupMount struct {
	dir string
	v2  bool
}

// cgroupMounts are tried in order.
var cgroupMounts = []cgroupMount{
	{dir: "/sys/fs/cgroup/cpu"},
	{dir: "/sys/fs/cgroup/cpu,cpuacct"},
	{dir: "/sys/fs/cgroup/unified", v2: true},
	{dir: "/sys/fs/cgroup", v2: true},
}

// cpuQuota is the CFS period and quota of a budget of cores.
func cpuQuota(cores float64) (period, quota time.Duration, err error) {
	if !(cores > 0) || math.IsInf(cores, 1) {
		return 0, 0, fmt.Errorf("redis: CPU budget %v: want a number of cores > 0", cores)
	}
	period = cpuPeriod
	quota = time.Duration(cores * float64(period))
	if quota < cpuMinQuota {
		quota = cpuMinQuota
		period = time.Duration(float64(cpuMinQuota) / cores)
	}
	if period > time.Second {
		return 0, 0, fmt.Errorf("redis: CPU budget %v cores is below what a 1 s period allows (%v)", cores, float64(cpuMinQuota)/float64(time.Second))
	}
	return period, quota, nil
}

// cpuGroup is a cgroup with a CPU budget.
type cpuGroup struct {
	mount cgroupMount
	dir   string
}

// newCPUGroup makes the cgroup name with a budget of cores under the
// first mount where the cpu controller is writable, and says why at each
// mount when none is.
func newCPUGroup(mounts []cgroupMount, name string, cores float64) (*cpuGroup, error) {
	period, quota, err := cpuQuota(cores)
	if err != nil {
		return nil, err
	}
	var why []error
	for _, m := range mounts {
		g, err := makeCPUGroup(m, name, period, quota)
		if err == nil {
			return g, nil
		}
		why = append(why, err)
	}
	return nil, fmt.Errorf("redis: no writable cgroup cpu controller for a CPU budget (it needs root and the cpu controller, v1 or v2): %w", errors.Join(why...))
}

func makeCPUGroup(m cgroupMount, name string, period, quota time.Duration) (*cpuGroup, error) {
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }
	if !m.v2 {
		if _, err := os.Stat(filepath.Join(m.dir, "cpu.cfs_quota_us")); err != nil {
			return nil, fmt.Errorf("v1 at %s: %w", m.dir, err)
		}
	} else {
		b, err := os.ReadFile(filepath.Join(m.dir, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("v2 at %s: %w", m.dir, err)
		}
		if !hasWord(string(b), "cpu") {
			return nil, fmt.Errorf("v2 at %s: no cpu controller (cgroup.controllers: %q)", m.dir, strings.TrimSpace(string(b)))
		}
		// The new group gets the controller only if its parent hands it
		// down.
		sub, err := os.ReadFile(filepath.Join(m.dir, "cgroup.subtree_control"))
		if err != nil {
			return nil, fmt.Errorf("v2 at %s: %w", m.dir, err)
		}
		if !hasWord(string(sub), "cpu") {
			if err := writeFile(filepath.Join(m.dir, "cgroup.subtree_control"), "+cpu"); err != nil {
				return nil, fmt.Errorf("v2 at %s: enable the cpu controller for subgroups: %w", m.dir, err)
			}
		}
	}
	g := &cpuGroup{mount: m, dir: filepath.Join(m.dir, name)}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", g.version(), err)
	}
	var err error
	if m.v2 {
		err = writeFile(filepath.Join(g.dir, "cpu.max"), us(quota)+" "+us(period))
	} else {
		// The period first: a quota is checked against the current one.
		err = writeFile(filepath.Join(g.dir, "cpu.cfs_period_us"), us(period))
		if err == nil {
			err = writeFile(filepath.Join(g.dir, "cpu.cfs_quota_us"), us(quota))
		}
	}
	if err != nil {
		_ = os.Remove(g.dir)
		return nil, fmt.Errorf("%s: %w", g.version(), err)
	}
	return g, nil
}

func (g *cpuGroup) version() string {
	if g.mount.v2 {
		return "v2 at " + g.mount.dir
	}
	return "v1 at " + g.mount.dir
}

// add moves process pid (all its threads) into the group; the processes
// it forks later (a Redis child saving or syncing a replica) start there.
func (g *cpuGroup) add(pid int) error {
	if err := writeFile(filepath.Join(g.dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("redis: put pid %d in cgroup %s: %w", pid, g.dir, err)
	}
	return nil
}

// pids are the processes in the group.
func (g *cpuGroup) pids() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for f := range strings.FieldsSeq(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("redis: %s/cgroup.procs: %q", g.dir, f)
		}
		out = append(out, pid)
	}
	return out, nil
}

// throttled is how many periods the group used up its quota in, from
// cpu.stat (nr_throttled, both versions).
func (g *cpuGroup) throttled() (int64, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "nr_throttled "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("redis: %s/cpu.stat has no nr_throttled", g.dir)
}

// remove deletes the group. A cgroup with processes cannot be removed,
// so what is still in it (the server was killed first; a child it forked
// may linger) is moved to the parent group first.
func (g *cpuGroup) remove() error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		pids, err := g.pids()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		for _, pid := range pids {
			// A process that exited meanwhile cannot be moved; rmdir
			// tells whether any is left.
			_ = writeFile(filepath.Join(g.mount.dir, "cgroup.procs"), strconv.Itoa(pid))
		}
		err = os.Remove(g.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis: remove cgroup %s: %w", g.dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LimitCPU runs the server, now and after every Restart, in a cgroup of
// its own with a budget of cores (e.g. 0.15: 1.5 ms of CPU every 10 ms).
// The group is removed when the test ends, after the server is stopped.
// It fails with an error naming what it tried when no cgroup cpu
// controller is writable (not root, or no cpu controller).
func (s *Server) LimitCPU(t testing.TB, cores float64) error {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpu != nil {
		return fmt.Errorf("redis: server on %s already has a CPU budget", s.Addr)
	}
	g, err := newCPUGroup(cgroupMounts, fmt.Sprintf("fluxgate-redis-%d-%d", os.Getpid(), s.port), cores)
	if err != nil {
		return err
	}
	t.Cleanup(func() {
		s.Kill()
		if err := g.remove(); err != nil {
			t.Error(err)
		}
	})
	if s.cmd != nil {
		if err := g.add(s.cmd.Process.Pid); err != nil {
			return err
		}
	}
	s.cpu, s.cores = g, cores
	return nil
}

// CPUBudget is the server's budget in cores; 0 without one.
func (s *Server) CPUBudget() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cores
}

// Throttled is how many periods the server used up its CPU budget in
// (the kernel's nr_throttled of its group); 0 without a budget.
func (s *Server) Throttled() (int64, error) {
	s.mu.Lock()
	g := s.cpu
	s.mu.Unlock()
	if g == nil {
		return 0, nil
	}
	return g.throttled()
}

func hasWord(s, w string) bool {
	for f := range strings.FieldsSeq(s) {
		if f == w {
			return true
		}
	}
	return false
}

// writeFile writes a cgroup control file.
func writeFile(name, s string) error {
	return os.WriteFile(name, []byte(s), 0o644)
}
