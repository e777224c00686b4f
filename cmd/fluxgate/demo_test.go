package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemoShedsLoadUnderOverload runs a short demo: the upstream loses
// three quarters of its capacity a third of the way in, and the
// service-protection loop must shed load in the last third.
func TestDemoShedsLoadUnderOverload(t *testing.T) {
	var out bytes.Buffer
	res, err := runDemo(context.Background(), &out, 24*time.Second, 150)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo output:\n%s", out.String())
	if !res.shed {
		t.Fatalf("admission did not drop: %.0f%% before the overload, %.0f%% in its last third", 100*res.admittedEarly, 100*res.lateAdm)
	}
	if !strings.Contains(out.String(), "MULTIPLIER") {
		t.Fatal("no signal table")
	}
}
