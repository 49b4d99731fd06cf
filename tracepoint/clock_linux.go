package tracepoint

import (
	"time"

	"golang.org/x/sys/unix"
)

// Records carry CLOCK_MONOTONIC nanoseconds, the clock of mmiotrace's MMIO
// records. time.Since on a time.Time with a monotonic reading costs one vDSO
// clock read; its zero is pinned to CLOCK_MONOTONIC once, by bracketing
// time.Now between two direct clock reads (the error is half that bracket,
// well under a microsecond).
var monoBase, monoStart = func() (int64, time.Time) {
	var a, b unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
	t := time.Now()
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
	return (a.Nano() + b.Nano()) / 2, t
}()

// monotime returns CLOCK_MONOTONIC in nanoseconds.
func monotime() int64 { return monoBase + int64(time.Since(monoStart)) }
