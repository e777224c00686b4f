//go:build !race

package gateway

// raceEnabled: the race detector runs, which allocates on its own.
const raceEnabled = false
