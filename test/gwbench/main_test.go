package main

import (
	"slices"
	"strings"
	"testing"
)

// A ratio to nginx's added p99 is given only when nginx added something:
// at or below zero (its p99 under direct's, which happens under -h2, where
// direct is h2c) the row says so instead of passing the target.
func TestAddedVerdict(t *testing.T) {
	for _, tc := range []struct {
		gateway, nginx float64
		want           string
	}{
		{2.4, 2.0, "1.20 | ≤ 1.2 ✓"},
		{3.0, 2.0, "1.50 | ≤ 1.2 ✗"},
		{3.664, -0.877, "none: nginx added -0.877 ms | ≤ 1.2 ?"},
		{1.0, 0, "none: nginx added 0.000 ms | ≤ 1.2 ?"},
	} {
		got := addedVerdict(map[string][]float64{"gateway": {tc.gateway}, "nginx": {tc.nginx}})
		if got != tc.want {
			t.Errorf("gateway %.3f, nginx %.3f: %q, want %q", tc.gateway, tc.nginx, got, tc.want)
		}
	}
}

// -baseline adds a contender run from the other binary, and the note
// gives the gateway's throughput and CPU as ratios to it and the added
// p99s side by side (either may be negative: no ratio).
func TestBaselineNote(t *testing.T) {
	defer func(b string) { *baseline = b }(*baseline)
	*baseline = "/tmp/old"
	if c := contenders(); !slices.Contains(c, "baseline") {
		t.Fatalf("contenders %v: no baseline", c)
	}
	pr := newProxying(1)
	pr.rps = map[string][]float64{"gateway": {40000, 44000, 42000}, "baseline": {40000}}
	pr.user = map[string][]float64{"gateway": {3}, "baseline": {4}}
	pr.sys = map[string][]float64{"gateway": {12}, "baseline": {16}}
	pr.added = map[string][]float64{"gateway": {1.5}, "baseline": {-0.25}}
	pr.sliceP99 = map[string][]float64{"direct": {1, 2, 3}, "gateway": {3}, "baseline": {4}}
	var b strings.Builder
	baselineNote(&b, pr)
	want := "\nThe gateway against the baseline build (-baseline /tmp/old): throughput 1.05×, CPU a request 0.75×; added p99 1.500 against -0.250 ms; added p99 of the median turn 1.000 against 2.000 ms\n"
	if b.String() != want {
		t.Errorf("note\n%q, want\n%q", b.String(), want)
	}
	defer func(b bool) { *bare = b }(*bare)
	*bare = true
	if c := contenders(); !slices.Equal(c, []string{"direct", "gateway", "nginx", "baseline"}) {
		t.Errorf("contenders %v under -bare -baseline", c)
	}
	*bare = false
	*baseline = ""
	if c := contenders(); slices.Contains(c, "baseline") {
		t.Errorf("contenders %v without -baseline", c)
	}
	b.Reset()
	baselineNote(&b, pr)
	if b.Len() != 0 {
		t.Errorf("a note without -baseline: %q", b.String())
	}
}

// -nginx-twin adds a second nginx, and the note gives its ratios to nginx
// by the targets' statistics: what they read when nothing differs.
func TestTwinNote(t *testing.T) {
	defer func(b, tw bool) { *bare, *nginxTwin = b, tw }(*bare, *nginxTwin)
	*bare, *nginxTwin = true, true
	if c := contenders(); !slices.Equal(c, []string{"direct", "gateway", "nginx", "nginx-twin"}) {
		t.Fatalf("contenders %v under -bare -nginx-twin", c)
	}
	pr := newProxying(1)
	pr.rps = map[string][]float64{"nginx": {40000}, "nginx-twin": {36000, 38000, 37000}}
	pr.added = map[string][]float64{"nginx": {2}, "nginx-twin": {3}}
	pr.sliceP99 = map[string][]float64{"direct": {1, 1, 1}, "nginx": {2, 3, 2}, "nginx-twin": {2, 2.1, 9}}
	var b strings.Builder
	twinNote(&b, pr)
	want := "\nnginx-twin against nginx (the same server twice): throughput 0.93×; added p99 1.50 | ≤ 1.2 ✗; added p99 of the median turn 1.10 | ≤ 1.2 ✓\n"
	if b.String() != want {
		t.Errorf("note\n%q, want\n%q", b.String(), want)
	}
	*nginxTwin = false
	b.Reset()
	twinNote(&b, pr)
	if b.Len() != 0 || slices.Contains(contenders(), "nginx-twin") {
		t.Errorf("a twin without -nginx-twin: %q, %v", b.String(), contenders())
	}
}
