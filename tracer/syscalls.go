package tracer

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
)

// mapsCall reports the syscalls that create, remove or change mappings.
func mapsCall(nr uint64) bool {
	switch nr {
	case unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MREMAP, unix.SYS_MPROTECT:
		return true
	}
	return false
}

// syscallStop handles a syscall-entry, syscall-exit or seccomp stop. At the
// entry of a mapping call it keeps the arguments; at its exit, if the call
// succeeded, it updates what is traced before the program can use the new
// mapping: the thread is still stopped, and no other thread can know the
// address yet.
func (t *Tracer) syscallStop(th *thread) error {
	info, err := ptrace.GetSyscallInfo(th.tid)
	if err != nil {
		return ignoreGone(err)
	}
	switch info.Op {
	case ptrace.SyscallEntry, ptrace.SyscallSeccomp:
		if mapsCall(info.Nr()) || info.Nr() == unix.SYS_BRK && len(t.cfg.Select.Ranges) > 0 {
			th.sys, th.inSys = info, true
			// Patches the call may invalidate go before it runs.
			if err := t.optMappingCall(th, &info); err != nil {
				return err
			}
		}
		if t.othersInMemory(th) && t.copiesMemory(th, info.Nr()) {
			return t.forkAlone(th)
		}
		if handled, err := t.serveEntry(th, &info); handled || err != nil {
			return err
		}
	case ptrace.SyscallExit:
		if err := t.serveExit(th, info.Ret()); err != nil {
			return err
		}
		if th.inSys {
			th.inSys = false
			if err := t.syscallExit(th, info.Ret()); err != nil {
				return err
			}
			if err := t.coverArmed(); err != nil {
				return err
			}
		}
	}
	return t.resume(th, 0)
}

// syscallExit applies a completed mapping call.
func (t *Tracer) syscallExit(th *thread, ret int64) error {
	if ret < 0 && ret > -4096 {
		return nil // failed: nothing changed
	}
	a := th.sys.Args
	pc := th.sys.IP - 2 // the syscall instruction
	t.injTID = th.tid
	clear(t.icache) // code may have been mapped, unmapped or made writable
	switch th.sys.Nr() {
	case unix.SYS_MMAP:
		addr, length := uint64(ret), pageAlign(a[1])
		// MAP_FIXED may have replaced traced memory, or watched pages.
		if err := t.unmapRange(addr, length, pc, th.tid); err != nil {
			return err
		}
		if err := t.rearmWatches(addr, length); err != nil {
			return err
		}
		if t.watch != nil && t.watch.pending > 0 && a[3]&unix.MAP_ANONYMOUS == 0 {
			// A library may have arrived with symbols to watch.
			if err := t.placeWatches(th); err != nil {
				return err
			}
		}
		if a[2]&unix.PROT_EXEC != 0 && a[3]&unix.MAP_ANONYMOUS == 0 {
			// Code arrived (a library): where it is, for symbolizing.
			if err := t.logCode(addr, addr+length); err != nil {
				return err
			}
		}
		if !t.mayTrace(addr, length, a[3], int(a[4])) {
			return nil
		}
		return t.syncMaps(addr, addr+length, pc, th.tid)
	case unix.SYS_MUNMAP:
		if err := t.unmapWatches(a[0], pageAlign(a[1]), pc, th.tid); err != nil {
			return err
		}
		return t.unmapRange(a[0], pageAlign(a[1]), pc, th.tid)
	case unix.SYS_MREMAP:
		// The moved pages keep the protection they had: PROT_NONE if we
		// had armed them. Give the new mapping the program's own first;
		// it is armed again below if it is still selected.
		moved := -1
		if fp := t.engine.Page(a[0]); fp != nil && fp.Armed {
			moved = fp.Prot
		}
		if err := t.unmapWatches(a[0], pageAlign(a[1]), pc, th.tid); err != nil {
			return err
		}
		if err := t.unmapRange(a[0], pageAlign(a[1]), pc, th.tid); err != nil {
			return err
		}
		addr, length := uint64(ret), pageAlign(a[2])
		if err := t.unmapRange(addr, length, pc, th.tid); err != nil {
			return err
		}
		if moved >= 0 {
			if err := t.protector().Protect(addr, length, moved); err != nil {
				return err
			}
		}
		return t.syncMaps(addr, addr+length, pc, th.tid)
	case unix.SYS_MPROTECT:
		return t.protectRange(a[0], pageAlign(a[1]), int(a[2]))
	case unix.SYS_BRK:
		return t.brkMoved(uint64(ret), pc, th.tid)
	}
	return nil
}

// brkMoved follows the heap's break to brk (what brk returned: the new
// break, or the old one when it failed), for the --range selections over
// the heap: pages it gains inside a range are traced (a new map id for
// each growth, as for an adjacent mmap), pages it loses are unmapped (a
// piece cut in part keeps its id).
func (t *Tracer) brkMoved(brk, pc uint64, tid int) error {
	end := pageAlign(brk)
	old := t.brk
	t.brk = end
	lo, hi := min(old, end), max(old, end)
	if old == 0 || lo == hi {
		return nil
	}
	overlaps := false
	for _, r := range t.cfg.Select.Ranges {
		if r.Addr < hi && lo < r.Addr+r.Len {
			overlaps = true
		}
	}
	if !overlaps {
		return nil
	}
	if end < old {
		return t.unmapRange(end, old-end, pc, tid)
	}
	return t.syncMaps(old, end, pc, tid)
}

// heapEnd returns the page-aligned end of the process's heap: the end of
// [heap], or, while there is none, where the heap starts (start_brk, field
// 47 of /proc/PID/stat).
func heapEnd(pid int) uint64 {
	if maps, err := ReadMaps(pid); err == nil {
		for _, m := range maps {
			if m.Path == "[heap]" {
				return m.End
			}
		}
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// Fields after the command: state is field 3, so start_brk (47) is
	// f[47-3].
	if len(f) <= 44 {
		return 0
	}
	v, _ := strconv.ParseUint(f[44], 10, 64)
	return pageAlign(v)
}

// mayTrace is a cheap filter for new mappings, so that the program's many
// anonymous mmaps (malloc, Go's heap) cost no /proc/PID/maps read: a
// mapping can only be selected by a glob if it has a file, or by a range if
// it overlaps one.
func (t *Tracer) mayTrace(addr, length, flags uint64, fd int) bool {
	for _, r := range t.cfg.Select.Ranges {
		if r.Addr < addr+length && addr < r.Addr+r.Len {
			return true
		}
	}
	return flags&unix.MAP_ANONYMOUS == 0 && fd >= 0 && len(t.cfg.Select.Globs) > 0
}

func pageAlign(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }
