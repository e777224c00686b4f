//go:build race

package gateway

// raceEnabled: the race detector is on. It allocates on its own, and
// sync.Pool drops a share of what it is given, so pooled objects are
// allocated again now and then.
const raceEnabled = true
