//go:build !unix

package conncap

import "errors"

// openFilesLimit reports no limit where there is no RLIMIT_NOFILE.
func openFilesLimit() (soft, hard uint64, ok bool) { return 0, 0, false }

// RaiseOpenFilesLimit fails where there is no RLIMIT_NOFILE.
func RaiseOpenFilesLimit() error {
	return errors.New("conncap: no RLIMIT_NOFILE on this system")
}
