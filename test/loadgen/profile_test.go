package main

import (
	"slices"
	"testing"
)

func TestProfilePath(t *testing.T) {
	defer func(m string) { *profMode = m }(*profMode)
	for _, c := range []struct {
		prof, mode, name string
		onAgent          bool
		want             string
	}{
		{"", "all", "exact, 10,000 keys", true, ""},
		{"/tmp/p.pprof", "exact, 10,000 keys", "exact, 10,000 keys", true, "/tmp/p.pprof"},
		{"/tmp/p.pprof", "exact, 10,000 keys", "lazy_sync, 10,000 keys", true, ""},
		{"/tmp/p.pprof", "exact, 10,000 keys", "exact, 10,000 keys", false, ""},
		{"/tmp/p.pprof", "all", "gRPC (lean client) lazy_sync, 10,000 keys", true, "/tmp/p-grpc-lean-client-lazy-sync-10000-keys.pprof"},
		{"/tmp/p.pprof", "all", "HTTP (wrk) exact, 10,000 keys", true, "/tmp/p-http-wrk-exact-10000-keys.pprof"},
		{"/tmp/prof", "all", "floor (EVALSHA loop)", false, ""},
		{"/tmp/prof", "all", "exact, 64 keys", true, "/tmp/prof-exact-64-keys"},
	} {
		*profMode = c.mode
		if got := profilePath(c.prof, c.name, c.onAgent); got != c.want {
			t.Errorf("-cpuprofile %q -profile-mode %q, %q on the agent %v: %q, want %q", c.prof, c.mode, c.name, c.onAgent, got, c.want)
		}
	}
}

func TestRunOrderPutsEachBaselineModeAfterItsTwin(t *testing.T) {
	var modes []loadMode
	for _, n := range []string{"floor", "exact", "lazy", "HTTP exact", "baseline exact", "baseline lazy", "baseline HTTP exact", "baseline only"} {
		modes = append(modes, loadMode{name: n})
	}
	var got []string
	for _, m := range runOrder(modes) {
		got = append(got, m.name)
	}
	want := []string{"floor", "exact", "baseline exact", "lazy", "baseline lazy", "HTTP exact", "baseline HTTP exact", "baseline only"}
	if !slices.Equal(got, want) {
		t.Fatalf("runOrder = %q, want %q", got, want)
	}
}

func TestBeforePath(t *testing.T) {
	for in, want := range map[string]string{"/tmp/a.pprof": "/tmp/a.before.pprof", "/tmp/a": "/tmp/a.before", "/tmp/x-http-wrk-exact-10000-keys.pb.gz": "/tmp/x-http-wrk-exact-10000-keys.pb.before.gz"} {
		if got := beforePath(in); got != want {
			t.Errorf("beforePath(%q) = %q, want %q", in, got, want)
		}
	}
}
