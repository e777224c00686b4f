// Package eventloop runs event loops over Linux's epoll: a small poller
// for servers that serve many sockets on a few goroutines, as nginx's
// workers do.
//
// A Group is N loops (Options.Loops, default GOMAXPROCS). Each Loop is one
// goroutine around epoll_wait, level-triggered: a file descriptor that
// stays readable is reported again on the next wait, so a handler reads
// once per event and leaves the rest for the next one. Everything a loop
// owns — the descriptors registered on it, its timers, its handlers'
// state — is touched only by that goroutine; other goroutines reach it
// with Post, which queues a function and wakes the loop through an
// eventfd. A loop does per iteration: wait (the timeout is the earliest
// timer's deadline), read the clock once (Loop.Now, the time every
// handler, timer and posted function of the iteration sees, and the one
// timers count from), run the handlers of the ready descriptors, run the
// timers that are due, run the posted functions. A loop waits blocked in
// epoll_wait, holding its P: while groups run, GOMAXPROCS is one more than
// the CPUs the loops are counted for, so that loops all waiting leave a P
// idle and the runtime does not hand theirs to other threads (procs.go).
//
// Handlers and timer functions run on the loop and must not block: a
// call that may wait goes on a goroutine, which Posts its result back.
// Post reports whether the function will run: once it says true, the
// function runs even if the group closes meanwhile (on the loop's way
// out), so a function that carries a resource (a socket dialled aside)
// never drops it silently; when it says false, the poster releases it.
// A handler that panics does not stop the loop: the panic is recovered
// and reported to Options.OnPanic (the handler's owner should have
// recovered it itself, to clean up its own state).
//
// Accept spreads a listener's connections over the loops: each loop
// watches a duplicate of the listening socket with EPOLLEXCLUSIVE, so
// the kernel wakes one idle loop per connection and no loop forwards
// descriptors to another.
//
// The zero Group is not usable: make one with New, then Start it; Close
// stops the loops and closes their epoll and eventfd descriptors (not
// the descriptors registered on them, which belong to their owners).
// Post, Close and Acceptor.Close are safe for concurrent use (the two
// Close not from a loop; close Acceptors before their Group); the other
// Loop and Timer methods are for the loop's own goroutine only.
//
// Linux only: on other systems the package declares nothing.
package eventloop
