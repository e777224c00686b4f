package main

import "testing"

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
