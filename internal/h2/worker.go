package h2

// Handler goroutines are kept for a connection's next streams. A fresh
// goroutine per stream grew its stack while the gateway's handler ran,
// copying it once or twice on every request (runtime.copystack was 7-8 %
// of the gateway's CPU under HTTP/2 load); a worker that served a stream
// has the stack grown already. A stream goes to a worker of its
// connection waiting for one, or to a new goroutine when none waits. A
// worker waits for the next stream only while fewer than maxIdleWorkers
// wait in the whole server (their stacks are what idle workers hold), and
// until its connection's handlers have all returned; after workerStreams
// streams it ends, so that a stack grown by one deep request is not kept
// for ever.
const (
	maxIdleWorkers = 1024
	workerStreams  = 1 << 12
)

// startHandler runs st's handler on a waiting worker or a new one. On the
// reader goroutine.
func (c *conn) startHandler(st *stream) {
	c.handlers.Add(1)
	select {
	case c.work <- st:
	default:
		if c.s.testHookWorker != nil {
			c.s.testHookWorker()
		}
		c.workers.Add(1)
		go c.worker(st)
	}
}

// worker runs st's handler, then those of the streams handed to it while
// it waits (see startHandler).
func (c *conn) worker(st *stream) {
	defer c.workers.Done()
	idle := &c.s.idleWorkers
	for n := 1; ; n++ {
		c.runHandler(st)
		if n >= workerStreams {
			return
		}
		if idle.Add(1) > maxIdleWorkers {
			idle.Add(-1)
			return
		}
		var ok bool
		st, ok = <-c.work // closed once the connection's handlers returned
		idle.Add(-1)
		if !ok {
			return
		}
	}
}
