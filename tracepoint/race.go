//go:build race

package tracepoint

import "sync/atomic"

// raceFence carries Sync's guarantee to the race detector. Sync learns that
// a Fire has finished from the garbage collector (see Sync), an ordering the
// detector cannot see: without this, memory a probe touched and its owner
// reuses after Unregister and Sync (a collector's ring, say) would be
// reported as a race. Every Fire adds to raceFence after its last probe
// returns and Sync loads it before returning; atomics order memory for the
// detector as they do for the program. Only race builds pay for it.
var raceFence atomic.Uint64

func raceFireDone() { raceFence.Add(1) }

func raceSyncDone() { raceFence.Load() }
