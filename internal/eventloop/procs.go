//go:build linux

package eventloop

import (
	"runtime"
	"sync"
)

// A loop waits for events blocked in epoll_wait, a system call, and a
// goroutine in a system call keeps its P. With a loop a P (the default),
// loops that all wait hold every P, and the runtime's sysmon then takes
// them back every few tens of microseconds and hands them to other
// threads (runtime.handoffp: 0.04 a request through the gateway under
// wrk on 2 CPUs), the loops hopping between threads as they wake: about
// 2 µs of CPU a request (BENCHMARKS.md, "Where the loop engine's kernel
// time goes"). The runtime leaves a P in a system call alone while
// another P is idle, so while groups run, GOMAXPROCS is one more than
// the CPUs the loops are counted for: the waits cost no P, and Go code
// still runs on as many threads as before when the loops are busy.
var spare struct {
	sync.Mutex
	groups int // groups started and not closed
	procs  int // GOMAXPROCS before the first of them raised it
	raised int // what it was raised to
}

// defaultLoops is the number of loops of a group made with Options.Loops
// 0: GOMAXPROCS, as it was before running groups raised it.
func defaultLoops() int {
	spare.Lock()
	defer spare.Unlock()
	if spare.groups > 0 {
		return spare.procs
	}
	return runtime.GOMAXPROCS(0)
}

// raiseProcs adds the spare P as a group starts (the first of those
// running).
func raiseProcs() {
	spare.Lock()
	defer spare.Unlock()
	if spare.groups == 0 {
		spare.procs = runtime.GOMAXPROCS(0)
		spare.raised = spare.procs + 1
		runtime.GOMAXPROCS(spare.raised)
	}
	spare.groups++
}

// restoreProcs takes the spare P back as the last group running closes,
// unless someone else set GOMAXPROCS meanwhile.
func restoreProcs() {
	spare.Lock()
	defer spare.Unlock()
	spare.groups--
	if spare.groups == 0 && runtime.GOMAXPROCS(0) == spare.raised {
		runtime.GOMAXPROCS(spare.procs)
	}
}
