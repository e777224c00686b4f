//go:build !unix

package gateway

import "net"

// idleReadable: without a non-blocking peek, an idle connection is taken
// as unused (see the unix version).
func idleReadable(net.Conn) bool { return false }
