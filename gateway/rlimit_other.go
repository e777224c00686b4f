//go:build !unix

package gateway

// openFilesLimit reports no limit where there is no RLIMIT_NOFILE.
func openFilesLimit() (soft uint64, ok bool) { return 0, false }
