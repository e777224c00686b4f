package conncap

import "testing"

func TestFit(t *testing.T) {
	for _, tc := range []struct {
		want, per int64
		f         OpenFiles
		got       int64
	}{
		// The gateway: a client connection and its target's each.
		{10000, 2, OpenFiles{Soft: 1 << 20, InUse: 40}, 10000},       // a raised limit: as configured
		{10000, 2, OpenFiles{Soft: 20000, InUse: 100}, 9822},         // (20000-100-256)/2
		{10000, 2, OpenFiles{Soft: 1024, InUse: 30}, 369},            // a default soft limit of 1024
		{10000, 2, OpenFiles{Soft: 300, InUse: 100}, 1},              // nothing left: one still
		{4, 2, OpenFiles{Soft: 1 << 20, InUse: 40}, 4},               // a small cap stays
		{10000, 2, OpenFiles{Soft: 20256 + 40, InUse: 40}, 10000},    // just enough
		{10000, 2, OpenFiles{Soft: 20256 + 40 - 2, InUse: 40}, 9999}, // one short (two descriptors)
		// The agent: a cap on each of 6 listeners.
		{4096, 6, OpenFiles{Soft: 1 << 20, InUse: 20}, 4096},
		{4096, 6, OpenFiles{Soft: 1024, InUse: 16}, 125},    // (1024-16-256)/6
		{4096, 6, OpenFiles{Soft: 1 << 63, InUse: 0}, 4096}, // an unlimited soft limit
		{4096, 0, OpenFiles{Soft: 1024}, 768},               // per < 1 counts as 1
	} {
		if got := tc.f.Fit(tc.want, tc.per); got != tc.got {
			t.Errorf("%+v.Fit(%d, %d) = %d, want %d", tc.f, tc.want, tc.per, got, tc.got)
		}
	}
}

// ReadOpenFiles reads the limit the process has and counts at least the
// descriptors of the standard streams.
func TestReadOpenFiles(t *testing.T) {
	soft, hard, ok := openFilesLimit()
	f, ok2 := ReadOpenFiles()
	if ok != ok2 || f.Soft != soft || f.Hard != hard {
		t.Fatalf("ReadOpenFiles() = %+v, %v; the limit is soft %d, hard %d (%v)", f, ok2, soft, hard, ok)
	}
	if ok && f.Soft > f.Hard {
		t.Fatalf("soft limit %d over the hard one %d", f.Soft, f.Hard)
	}
}
