package pace

import (
	"testing"
	"time"
)

// Until returns at t or after it, never before, and at once for a time
// passed.
func TestUntil(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 0, 300 * time.Microsecond, 3 * time.Millisecond} {
		due := time.Now().Add(d)
		Until(due)
		if now := time.Now(); now.Before(due) {
			t.Errorf("Until(now%+v) returned %v early", d, due.Sub(now))
		}
	}
}
