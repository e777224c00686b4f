package conncap

import "os"

// Reserve descriptors are kept out of a cap's budget for what is not a
// client connection: listeners, Redis, Prometheus, the TSDB, policy files
// and logs.
const Reserve = 256

// OpenFiles is the process's open-files limit and the descriptors it has
// open.
type OpenFiles struct {
	Soft, Hard uint64 // RLIMIT_NOFILE
	InUse      int64  // descriptors open now; 0 where unknown
}

// ReadOpenFiles reads the open-files limit and the descriptors open
// (/proc/self/fd); false where there is no RLIMIT_NOFILE.
func ReadOpenFiles() (OpenFiles, bool) {
	soft, hard, ok := openFilesLimit()
	if !ok {
		return OpenFiles{}, false
	}
	f := OpenFiles{Soft: soft, Hard: hard}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		f.InUse = int64(len(fds))
	}
	return f, true
}

// Fit is the cap want lowered, if need be, so that want connections of
// per descriptors each fit in the descriptors free under the soft limit,
// InUse open and Reserve kept; at least 1. The gateway counts 2 a
// connection (a client's and its target's); the agent, with a cap for
// each of n listeners, counts n.
func (f OpenFiles) Fit(want, per int64) int64 {
	fit := (int64(min(f.Soft, 1<<40)) - f.InUse - Reserve) / max(per, 1)
	if fit >= want {
		return want
	}
	return max(fit, 1)
}
