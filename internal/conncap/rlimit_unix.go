//go:build unix

package conncap

import "syscall"

// openFilesLimit returns RLIMIT_NOFILE.
func openFilesLimit() (soft, hard uint64, ok bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, false
	}
	return uint64(r.Cur), uint64(r.Max), true
}

// RaiseOpenFilesLimit sets the soft RLIMIT_NOFILE to the hard one.
// (Go raises it at start on Linux since 1.19; a process that lowered it
// since, or a platform where Go does not, gets it here.)
func RaiseOpenFilesLimit() error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	r.Cur = r.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
}
