//go:build !linux

package pace

import "time"

// Until sleeps until t (not at all if t has passed).
func Until(t time.Time) { time.Sleep(time.Until(t)) }
