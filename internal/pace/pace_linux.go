package pace

import (
	"syscall"
	"time"
)

// Until sleeps until t (not at all if t has passed), again after a
// signal cut the sleep short (the runtime's preemption signals do).
func Until(t time.Time) {
	for w := time.Until(t); w > 0; w = time.Until(t) {
		ts := syscall.NsecToTimespec(int64(w))
		_ = syscall.Nanosleep(&ts, nil)
	}
}
