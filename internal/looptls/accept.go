//go:build linux

package looptls

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// Accept passes each connection ln accepts (handshaken, from
// certs.Reloader.WrappedListener) to adopt until ln is closed, then
// returns nil, or until Accept fails for good, then returns its error. A
// failure that passes (a timeout, EMFILE, ECONNABORTED) is logged and
// retried after a pause of 5 ms, doubling while they follow each other,
// up to 1 s.
func Accept(ln net.Listener, adopt func(net.Conn), logger *slog.Logger) error {
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			pause = 0
			adopt(c)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		var ne net.Error
		var t interface{ Temporary() bool }
		if !(errors.As(err, &ne) && ne.Timeout() || errors.As(err, &t) && t.Temporary()) {
			return err
		}
		pause = min(max(2*pause, 5*time.Millisecond), time.Second)
		logger.Warn("accepting a TLS connection failed; retrying", "err", err, "in", pause)
		time.Sleep(pause)
	}
}
