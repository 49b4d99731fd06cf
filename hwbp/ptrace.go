package hwbp

import (
	"fmt"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
)

// debugRegOffset is offsetof(struct user, u_debugreg) on x86-64: where
// PTRACE_PEEKUSER and PTRACE_POKEUSER find DR0-DR7, eight bytes apart (DR4
// and DR5 are not accessible).
const debugRegOffset = 848

func drOffset(n int) uintptr { return uintptr(debugRegOffset + 8*n) }

// dr6Clean is DR6 with no condition recorded, in the architectural polarity
// the kernel's ptrace interface uses (the reserved bits that read as 1 are
// set).
const dr6Clean DR6 = 0xffff0ff0

// Program writes s into thread tid's debug registers: the address of every
// used slot into DR0-DR3 and s.DR7() into DR7. DR7 is first written as 0 and
// last with the new value, so that the kernel never sees an address paired
// with a stale type or length (it validates each write, and would refuse, for
// example, an unaligned address under an enabled 8-byte slot). The caller
// must be tid's ptrace tracer, on the OS thread that attached it, and tid
// must be in a ptrace stop, so no access slips through between the writes.
// Program does not touch a perf breakpoint the thread may also have.
func Program(tid int, s *Slots) error {
	if err := ptrace.PokeUser(tid, drOffset(7), 0); err != nil {
		return fmt.Errorf("hwbp: disable debug registers of %d: %w", tid, err)
	}
	for i := range NumSlots {
		r, ok := s.Slot(i)
		if !ok {
			continue
		}
		if err := ptrace.PokeUser(tid, drOffset(i), r.Addr); err != nil {
			return fmt.Errorf("hwbp: set DR%d of %d to %#x: %w", i, tid, r.Addr, err)
		}
	}
	d := s.DR7()
	if !d.AnyEnabled() {
		return nil
	}
	if err := ptrace.PokeUser(tid, drOffset(7), uint64(d)); err != nil {
		return fmt.Errorf("hwbp: set DR7 of %d to %#x: %w", tid, uint64(d), err)
	}
	return nil
}

// Clear disables every debug register of thread tid (DR7 = 0). The same
// conditions as for Program apply.
func Clear(tid int) error {
	if err := ptrace.PokeUser(tid, drOffset(7), 0); err != nil {
		return fmt.Errorf("hwbp: clear debug registers of %d: %w", tid, err)
	}
	return nil
}

// ReadDR7 reads thread tid's DR7 as the kernel reports it to ptrace: the
// value the tracer last wrote, since the kernel accepts a DR7 write only if
// it could install every slot the value enables (it returns an error, and
// keeps the previous breakpoints, otherwise). The CPU's real DR7 while the
// thread runs is the kernel's own encoding of the same slots.
func ReadDR7(tid int) (DR7, error) {
	v, err := ptrace.PeekUser(tid, drOffset(7))
	if err != nil {
		return 0, fmt.Errorf("hwbp: read DR7 of %d: %w", tid, err)
	}
	return DR7(v), nil
}

// ReadDR6 reads thread tid's debug status: at the SIGTRAP stop of a debug
// trap, which slots (Hit) caused it, or whether it was a single step. The
// kernel keeps a per-thread copy that it builds for ptrace. Recent kernels
// (5.10 on) start it afresh at every debug exception; older ones accumulate
// bits, so call ResetDR6 after handling each trap to be portable.
func ReadDR6(tid int) (DR6, error) {
	v, err := ptrace.PeekUser(tid, drOffset(6))
	if err != nil {
		return 0, fmt.Errorf("hwbp: read DR6 of %d: %w", tid, err)
	}
	return DR6(v), nil
}

// ResetDR6 clears the recorded debug conditions of thread tid.
func ResetDR6(tid int) error {
	if err := ptrace.PokeUser(tid, drOffset(6), uint64(dr6Clean)); err != nil {
		return fmt.Errorf("hwbp: reset DR6 of %d: %w", tid, err)
	}
	return nil
}
