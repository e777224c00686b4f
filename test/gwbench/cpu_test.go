package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatReadsTimesPastACommandWithParentheses(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
	line := "4242 (nginx: (worker) x) S 4241 4241 4241 0 -1 4194624 10 0 0 0 250 75 0 0 20 0 1 0\n"
	got, ppid := parseStat(line)
	if ppid != 4241 || got.user != 2.5 || got.sys != 0.75 {
		t.Fatalf("parseStat = %+v, ppid %d; want user 2.5 s, sys 0.75 s, ppid 4241", got, ppid)
	}
	if c, p := parseStat("1 (short) S"); p != 0 || c != (cpu{}) {
		t.Fatalf("a cut line gave %+v, %d", c, p)
	}
}

// This process's CPU time is read; a reader that finds nothing (a wrong
// field, a wrong path) keeps it at zero however long the test burns CPU.
func TestCPUTimeOfThisProcessIsRead(t *testing.T) {
	giveUp := time.Now().Add(10 * time.Second) // a hang guard, not a speed bound
	for cpuTime(os.Getpid()) == (cpu{}) {
		if time.Now().After(giveUp) {
			t.Fatal("this process's CPU time stays zero")
		}
	}
}

func TestPerRequest(t *testing.T) {
	if got := (cpu{user: 2, sys: 1}).per(1e6); got.user != 2 || got.sys != 1 {
		t.Fatalf("per = %+v, want 2 and 1 µs", got)
	}
	if got := (cpu{user: 2}).per(0); got != (cpu{}) {
		t.Fatalf("per(0) = %+v", got)
	}
}
