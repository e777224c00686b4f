//go:build !linux

package gateway

import "testing"

// serveLoopAddr serves nothing: the loop engine runs on Linux only.
func serveLoopAddr(testing.TB, *Gateway) string { return "" }
