package trace

import (
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

func init() {
	var ts unix.Timespec
	anchorTime = time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		anchorMono = ts.Nano()
	}
}

// Now returns the current CLOCK_MONOTONIC time in nanoseconds.
func Now() int64 {
	return anchorMono + int64(time.Since(anchorTime))
}
