package tracer

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Placement: every hit is a round trip between a traced thread and the
// tracer thread. On one CPU the hand-over is a direct switch; across CPUs
// it needs a wake-up IPI and costs several times more, and varies with the
// scheduler's mood (docs/BENCHMARKS.md has the figures). So by default the
// tracer thread and the traced threads share one CPU: the one the tracer
// runs on when the session starts. Threads created later inherit the
// affinity. An attached program gets its threads' own masks back when the
// tracer detaches, or from the waker if the tracer is killed (see
// WakerArg): the tracer tells the waker each mask before it changes it.

// pinSelf pins the calling (locked) thread to the CPU it runs on and
// returns that CPU.
func pinSelf() (int, bool) {
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e != 0 {
		return 0, false
	}
	var set unix.CPUSet
	set.Set(int(cpu))
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return 0, false
	}
	return int(cpu), true
}

// pinThread moves a traced thread to the tracer's CPU, remembering its own
// mask to restore at detach.
func (t *Tracer) pinThread(th *thread) {
	if !t.pinned {
		return
	}
	if err := unix.SchedGetaffinity(th.tid, &th.mask); err != nil {
		return
	}
	th.hasMask = true
	if !t.spawned { // a spawned program dies with the tracer
		t.waker.send(fmt.Sprintf(wakerThread, th.tid, formatMask(&th.mask)))
	}
	var set unix.CPUSet
	set.Set(t.cpu)
	unix.SchedSetaffinity(th.tid, &set)
}

// unpinThread gives a thread back its own mask (or, for a thread created
// while traced, the mask its process had).
func (t *Tracer) unpinThread(th *thread) {
	if !t.pinned {
		return
	}
	switch {
	case th.hasMask:
		unix.SchedSetaffinity(th.tid, &th.mask)
	case t.leaderMask.Count() > 0:
		unix.SchedSetaffinity(th.tid, &t.leaderMask)
	}
}
