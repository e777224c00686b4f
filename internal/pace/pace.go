// Package pace keeps an open-loop load driver's sends on time.
//
// time.Sleep under a millisecond lasts a whole one whenever the Go
// runtime waits in epoll (its timeout is in milliseconds): a driver that
// paces with it sends in bursts when its process goes idle between sends
// — the more so the faster the server answers — and counts its own
// lateness as the server's latency. A nanosleep keeps the pace to
// microseconds (on Linux; elsewhere Until is time.Sleep). Call Until
// from a goroutine locked to its OS thread (runtime.LockOSThread), which
// the sleep blocks.
package pace
