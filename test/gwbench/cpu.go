package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpu is a process tree's CPU time in user and system mode: seconds, or
// µs a request after per.
type cpu struct{ user, sys float64 }

func (c cpu) minus(o cpu) cpu { return cpu{c.user - o.user, c.sys - o.sys} }

// per divides c by n requests, in µs.
func (c cpu) per(n float64) cpu {
	if n <= 0 {
		return cpu{}
	}
	return cpu{c.user * 1e6 / n, c.sys * 1e6 / n}
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's
// times: 100 on every Linux architecture Go builds for.
const clockTicks = 100

// cpuTime reads the CPU time of pid and of its children that are still
// running (nginx's workers), from /proc. A process that cannot be read
// counts as zero.
func cpuTime(pid int) cpu {
	if pid == 0 {
		return cpu{}
	}
	total, _ := procTimes(pid)
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || child == pid {
			continue
		}
		if c, ppid := procTimes(child); ppid == pid {
			total.user += c.user
			total.sys += c.sys
		}
	}
	return total
}

// procTimes returns a process's utime and stime and its parent's pid.
func procTimes(pid int) (cpu, int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return cpu{}, 0
	}
	return parseStat(string(b))
}

// parseStat reads utime, stime and the parent's pid from a
// /proc/PID/stat line.
func parseStat(s string) (cpu, int) {
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after its closing one are space-separated, from state.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return cpu{}, 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return cpu{utime / clockTicks, stime / clockTicks}, ppid
}
