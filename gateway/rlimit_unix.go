//go:build unix

package gateway

import "syscall"

// openFilesLimit returns the soft RLIMIT_NOFILE.
func openFilesLimit() (soft uint64, ok bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	return uint64(r.Cur), true
}
