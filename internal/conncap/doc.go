// Package conncap caps a server's client connections and, when the cap
// is reached, makes room by closing the connection idle longest. The
// agent's listeners (server.max_connections, one Cap per listener) and
// the gateway (gateway.max_connections, one Cap for every engine) share
// it.
//
// A connection takes a slot (Slot) when it is accepted and gives it back
// when it closes; a hand-over from one owner to another moves the slot
// with the connection (Slot.SetEvict), so it counts once. At the cap a
// server stops accepting: further clients wait in the kernel's backlog.
// With Options.Evict, a client that waits makes the Cap close the
// connection idle longest — accepted and silent, or kept alive between
// requests — once it has been idle for Grace; a connection with a request
// in flight (Slot.Busy) is never closed for another: the server's
// timeouts bound it. One connection is closed for room at a time.
//
// Servers that accept with net.Listener take Cap.Listener: its Accept
// accepts a connection and then waits, with it, for a slot (so the server
// holds the cap and that one connection at most). An event loop asks
// Cap.Admit before each accept instead, calls Cap.Full when a client
// waits, and is told to look again through the function set with
// Cap.SetResume.
//
// A Cap's zero value is not usable; New makes one. Cap and Slot are safe
// for concurrent use, and a nil *Slot (a connection without a cap) does
// nothing.
//
// ReadOpenFiles and OpenFiles.Fit lower a cap so that it fits the
// open-files limit, Reserve descriptors kept for the rest of the process.
package conncap
