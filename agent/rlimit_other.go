//go:build !unix

package agent

import "errors"

func openFilesLimit() (soft, hard uint64, ok bool) { return 0, 0, false }

func raiseOpenFilesSoftLimit() error {
	return errors.New("agent: no RLIMIT_NOFILE on this system")
}
