//go:build !unix

package gateway

import "net"

// peeker: without a non-blocking peek, an idle connection is taken as
// unused (see the unix version).
type peeker struct{}

func newPeeker(net.Conn) *peeker { return &peeker{} }

func (*peeker) idleReadable() bool { return false }

func (*peeker) clearsDeadline() bool { return false }
