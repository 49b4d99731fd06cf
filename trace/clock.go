package trace

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// The clock: CLOCK_MONOTONIC, the kernel mmiotrace's and perf's clock, so that
// records from every source merge into one timeline. Go's monotonic clock is
// CLOCK_MONOTONIC read through the vDSO; anchoring it once to a
// clock_gettime(CLOCK_MONOTONIC) reading gives the same clock without a
// system call per record.
var (
	anchorTime time.Time
	anchorMono int64
)

// init anchors the clocks: it brackets a time.Now between two
// clock_gettime calls, keeps the tightest of a few brackets (a preemption
// or a slow system call widens one), and takes its middle, so that Now is
// within half that bracket (a fraction of a microsecond) of the kernel's
// clock.
func init() {
	best := int64(math.MaxInt64)
	for range 16 {
		var a, b unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &a) != nil {
			return
		}
		t := time.Now()
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &b) != nil {
			return
		}
		if d := b.Nano() - a.Nano(); d < best {
			best, anchorTime, anchorMono = d, t, a.Nano()+d/2
		}
	}
}

// Now returns the current CLOCK_MONOTONIC time in nanoseconds.
func Now() int64 {
	return anchorMono + int64(time.Since(anchorTime))
}
