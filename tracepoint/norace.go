//go:build !race

package tracepoint

// Without the race detector, Sync's ordering needs no annotation: see race.go.

func raceFireDone() {}

func raceSyncDone() {}
