package tracepoint

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// recordTIDs says whether collected records carry thread ids: only when the
// program was started with wire.EnvTIDs=1, because gettid is a system call
// (about 0.1-0.2 µs here), more than the rest of a collected event. It is
// read once, at init.
var recordTIDs = os.Getenv(wire.EnvTIDs) == "1"

// tidOK reports whether records carry thread ids.
func tidOK() bool { return recordTIDs }

// gettid returns the calling thread's id, or -1 when not recorded.
func gettid() int32 {
	if !recordTIDs {
		return -1
	}
	return int32(unix.Gettid())
}
