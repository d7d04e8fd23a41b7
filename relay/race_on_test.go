//go:build race

package relay

// raceEnabled: built with -race, under which sync.Pool drops some of what
// it is given (allocation counts mean nothing).
const raceEnabled = true
