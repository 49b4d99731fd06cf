package tracer

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/sysfilter"
	"github.com/mmiotrace/mmiotrace/internal/sysmem"
	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// System calls on traced memory. The kernel cannot reach an armed
// (PROT_NONE) page: a system call given a pointer into one would fail with
// EFAULT. So the tracer stops every call that may reach an armed page (in
// attach mode every call stops anyway; in spawn mode range filters pick
// them out, sysfilter.go) and serves it, with the memory each call reaches
// known from package sysmem:
//
//   - Bounce: the pieces on armed pages (and the structures that point to
//     them) are moved to a scratch buffer in the process: the call's
//     pointer arguments (or the pointers inside its iovecs and message
//     header) are rewritten, what the kernel reads is copied in at entry,
//     what it wrote is copied back at exit, and the registers get the
//     program's pointers back. The pages stay armed: other threads run on,
//     and a call that blocks (a read on a pipe, accept) blocks only its
//     thread. The kernel's reads are logged at entry, its writes at exit.
//   - Futex waits read the word once and sleep, keyed by its address: the
//     page is disarmed with the other threads stopped, the thread goes into
//     the call, and once it sleeps (or returned) the page is armed again
//     and the others go on.
//   - Everything else (Stop and Unknown calls, a bounce that does not fit)
//     runs with the pages it may reach disarmed and the other threads
//     stopped, to its exit. A call that has not returned after
//     exposeTimeout is left running with the pages armed again (and a
//     warning): its later accesses fail as they would without this, but no
//     thread waits on it for ever.
//
// A thread in a served call is parked: it is in the kernel and stops at
// the call's exit before it runs any code, so stopping the other threads
// (for a single-step) leaves it alone. While an exposed call has pages
// disarmed, no other thread of its memory runs: the first one the loop
// resumes arms them again first.

// exposeTimeout bounds how long other threads wait on an exposed call.
const exposeTimeout = 200 * time.Millisecond

// maxBounce bounds the scratch buffer of one call; larger calls are run
// exposed.
const maxBounce = 64 << 20

// Return values that make the kernel restart a call (they never reach the
// program): ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND and
// ERESTART_RESTARTBLOCK, which restarts through restart_syscall with
// arguments the kernel saved.
const (
	errRestartSys   = 512
	errRestartBlock = 516
)

func restarting(ret int64) bool { return ret <= -errRestartSys && ret >= -errRestartBlock }

// scratch is memory the tracer mapped in a process for bounced calls.
type scratch struct {
	addr, size uint64
	busy       bool
}

// bounce is a call whose pieces were moved to scratch memory.
type bounce struct {
	call  sysmem.Call
	to    []uint64 // each piece's scratch address, 0 if not moved
	buf   *scratch
	args  [6]uint64 // the program's arguments
	pc    uint64
	saved bool // kept for restart_syscall (ERESTART_RESTARTBLOCK)
}

// exposure is a call running with armed pages disarmed for it.
type exposure struct {
	call  sysmem.Call
	pages []*kmmio.FaultPage
	pc    uint64
	// entered: the thread is in the call (not at an entry stop repeated
	// after an injection).
	entered bool
	// rearmed: the pages were armed again before the call returned.
	rearmed bool
}

// syscall argument registers, in order.
func argReg(r *unix.PtraceRegs, i int) *uint64 {
	return [...]*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}[i]
}

// serveEntry serves a call at its entry (seccomp or syscall-entry stop)
// when it may reach armed pages. It reports whether it took care of the
// thread (resumed it, or queued its stop).
func (t *Tracer) serveEntry(th *thread, info *ptrace.SyscallInfo) (bool, error) {
	if th.bounce != nil && !th.bounce.saved {
		// The same call's seccomp stop after its entry stop (a process
		// that stops at every call): already served.
		return true, t.resumeInSyscall(th)
	}
	if e := th.exposed; e != nil {
		// The entry again, after an injection into this thread: the call
		// runs now, with its pages disarmed.
		e.entered = true
		return true, t.resumeInSyscall(th)
	}
	nr := info.Nr()
	if nr == unix.SYS_RESTART_SYSCALL {
		return t.serveRestart(th)
	}
	th.restartFutex = 0
	if t.engine == nil || t.engine.Pages() == 0 {
		return false, nil
	}
	call := sysmem.Decode(nr, info.Args, t.mem)
	if call.Class == sysmem.None || call.Class == sysmem.Restart {
		return false, nil
	}
	pages := t.armedPages(&call)
	if call.Overflow {
		pages = pages[:0]
		t.engine.EachPage(func(fp *kmmio.FaultPage) {
			if fp.Armed {
				pages = append(pages, fp)
			}
		})
		call.Class = sysmem.Unknown
	}
	if len(pages) == 0 {
		return false, nil
	}
	pc := info.IP - 2
	t.Counts.Syscalls.Add(1)
	switch call.Class {
	case sysmem.Bounce:
		done, err := t.bounceCall(th, &call, info.Args, pc)
		if done || err != nil {
			return true, err
		}
	case sysmem.FutexWait:
		th.restartFutex = info.Args[0]
	}
	return true, t.expose(th, &call, pages, pc)
}

// serveExit finishes the served call th is in, if any, at its exit stop.
func (t *Tracer) serveExit(th *thread, ret int64) error {
	switch {
	case th.bounce != nil:
		if ret == -errRestartBlock {
			// The kernel restarts the call from what it saved, our
			// scratch pointers: keep them, finish at restart_syscall's
			// exit.
			th.bounce.saved = true
			return t.restoreArgs(th, th.bounce.args)
		}
		return t.finishBounce(th, ret)
	case th.exposed != nil:
		return t.endExposure(th, ret)
	}
	return nil
}

// serveRestart handles restart_syscall, which resumes an interrupted call
// with the arguments the kernel saved.
func (t *Tracer) serveRestart(th *thread) (bool, error) {
	switch {
	case th.bounce != nil && th.bounce.saved:
		th.bounce.saved = false
		th.parked = true
		return true, t.resumeInSyscall(th)
	case th.restartFutex != 0 && t.engine != nil:
		// A futex wait with a timeout, interrupted: it reads the word
		// again.
		call := sysmem.Decode(unix.SYS_FUTEX, [6]uint64{th.restartFutex}, t.mem)
		call.Class = sysmem.FutexWait
		pages := t.armedPages(&call)
		if len(pages) == 0 {
			return false, nil
		}
		var regs unix.PtraceRegs
		if err := ptrace.GetRegs(th.tid, &regs); err != nil {
			return true, ignoreGone(err)
		}
		return true, t.expose(th, &call, pages, regs.Rip-2)
	}
	return false, nil
}

// armedPages returns the armed pages the call's pieces reach.
func (t *Tracer) armedPages(call *sysmem.Call) []*kmmio.FaultPage {
	var out []*kmmio.FaultPage
	seen := map[uint64]bool{}
	for i := range call.Pieces {
		p := &call.Pieces[i]
		t.eachArmedPage(p.Addr, p.Len, func(fp *kmmio.FaultPage) {
			if !seen[fp.Addr] {
				seen[fp.Addr] = true
				out = append(out, fp)
			}
		})
	}
	return out
}

// eachArmedPage calls fn for each armed page in [addr, addr+n). It walks
// the probes, not the range, which may be huge.
func (t *Tracer) eachArmedPage(addr, n uint64, fn func(*kmmio.FaultPage)) {
	end := addr + n
	if end < addr {
		end = ^uint64(0)
	}
	t.engine.ProbesIn(addr&^(pageSize-1), pageAlign(end)-addr&^(pageSize-1), func(p *kmmio.Probe) {
		lo := max(p.Addr&^(pageSize-1), addr&^(pageSize-1))
		hi := min(pageAlign(p.End()), pageAlign(end))
		for a := lo; a < hi; a += pageSize {
			if fp := t.engine.Page(a); fp != nil && fp.Armed {
				fn(fp)
			}
		}
	})
}

// onArmed reports whether [addr, addr+n) touches an armed page, and whether
// the program's own protection there allows dir.
func (t *Tracer) onArmed(addr, n uint64, dir sysmem.Dir) (touched, allowed bool) {
	allowed = true
	t.eachArmedPage(addr, n, func(fp *kmmio.FaultPage) {
		touched = true
		if dir&sysmem.Read != 0 && !fp.Allows(false) || dir&sysmem.Write != 0 && !fp.Allows(true) {
			allowed = false
		}
	})
	return touched, allowed
}

// bounceCall moves the call's pieces on armed pages to scratch memory and
// starts the call (done), or reports that it cannot (the caller exposes the
// pages instead). A call whose armed pages the program itself may not
// access as the call would is left to fail as it would untraced.
func (t *Tracer) bounceCall(th *thread, call *sysmem.Call, args [6]uint64, pc uint64) (done bool, err error) {
	n := len(call.Pieces)
	move := make([]bool, n)
	for i := range call.Pieces {
		p := &call.Pieces[i]
		touched, allowed := t.onArmed(p.Addr, p.Len, p.Dir)
		if !touched {
			continue
		}
		if !allowed {
			return true, t.resume(th, 0)
		}
		// A moved piece's parent holds its pointer: it moves too.
		for j := i; j >= 0 && !move[j]; j = call.Pieces[j].Parent {
			move[j] = true
		}
	}
	var size uint64
	offs := make([]uint64, n)
	for i, m := range move {
		if m {
			offs[i] = size
			size += (call.Pieces[i].Len + 15) &^ 15
		}
	}
	if size > maxBounce || !t.writableOutside(call, move) {
		return false, nil
	}
	buf, err := t.scratchFor(th, size)
	if err != nil || buf == nil {
		// The scratch was being made: the call runs again, and stops here
		// again.
		return true, err
	}
	b := &bounce{call: *call, to: make([]uint64, n), buf: buf, args: args, pc: pc}
	for i, m := range move {
		if m {
			b.to[i] = buf.addr + offs[i]
		}
	}
	// Copy in what the kernel reads, with the moved pieces' pointers
	// rewritten in their parents' copies; and the structures the kernel
	// writes in part (a message's control buffer, padding and all), whose
	// other bytes are copied back as they were.
	data := make([][]byte, n)
	for i, m := range move {
		p := &call.Pieces[i]
		if !m || p.Dir&sysmem.Read == 0 && exactOut(p.Out.Kind) {
			continue
		}
		data[i] = make([]byte, p.Len)
		if err := t.copyIn(data[i], p.Addr); err != nil {
			buf.busy = false
			return false, nil // not readable as one: exposed instead
		}
	}
	for i, m := range move {
		if p := &call.Pieces[i]; m && p.Parent >= 0 && data[p.Parent] != nil {
			binary.LittleEndian.PutUint64(data[p.Parent][p.Off:], b.to[i])
		}
	}
	for i, d := range data {
		if d != nil {
			if err := t.mem.WriteAt(d, b.to[i]); err != nil {
				buf.busy = false
				return false, fmt.Errorf("bounce %s: %w", call.Name, err)
			}
		}
	}
	var regs unix.PtraceRegs
	if err := ptrace.GetRegs(th.tid, &regs); err != nil {
		buf.busy = false
		return true, ignoreGone(err)
	}
	for i, m := range move {
		if p := &call.Pieces[i]; m && p.Parent < 0 {
			*argReg(&regs, p.Arg) = b.to[i]
		}
	}
	if err := ptrace.SetRegs(th.tid, &regs); err != nil {
		buf.busy = false
		return true, ignoreGone(err)
	}
	now := trace.Now()
	for i := range call.Pieces {
		if p := &call.Pieces[i]; p.Dir&sysmem.Read != 0 {
			if err := t.logSyscall(now, p.Addr, p.Len, trace.DirRead, call.Name, pc, th.tid); err != nil {
				return true, err
			}
		}
	}
	th.bounce = b
	th.parked = true
	return true, t.resumeInSyscall(th)
}

// writableOutside reports whether the parts of the moved pieces the kernel
// writes that lie outside the tracer's pages (a buffer that runs from a
// traced page into the next mapping) are memory the program may write: the
// copy back at the call's exit cannot fail there halfway, as the kernel's
// own copy would have. It reads /proc/PID/maps only for such pieces, which
// are rare.
func (t *Tracer) writableOutside(call *sysmem.Call, move []bool) bool {
	var maps []Mapping
	for i, m := range move {
		p := &call.Pieces[i]
		if !m || p.Dir&sysmem.Write == 0 || p.Parent >= 0 && t.engine.Page(p.Addr) == nil {
			continue
		}
		for a := p.Addr &^ (pageSize - 1); a < p.Addr+p.Len; a += pageSize {
			if t.engine.Page(a) != nil {
				continue
			}
			if maps == nil {
				var err error
				if maps, err = ReadMaps(t.pid); err != nil {
					return false
				}
			}
			i := slices.IndexFunc(maps, func(m Mapping) bool { return m.Start <= a && a < m.End })
			if i < 0 || maps[i].Prot()&protWrite == 0 {
				return false
			}
		}
	}
	return true
}

// exactOut reports the outputs whose written part the return value says
// exactly (a read's data), which need no copy in.
func exactOut(k sysmem.OutKind) bool {
	return k == sysmem.OutRet || k == sysmem.OutSpread || k == sysmem.OutElems
}

// finishBounce copies what the kernel wrote back to the program's memory,
// gives the program its arguments back and frees the scratch memory.
func (t *Tracer) finishBounce(th *thread, ret int64) error {
	b := th.bounce
	th.bounce = nil
	defer func() { b.buf.busy = false }()
	if !restarting(ret) {
		// A piece's field, after the call: from its scratch copy.
		field := func(piece int, off uint64, size int) (uint64, bool) {
			at := b.call.Pieces[piece].Addr + off
			if b.to[piece] != 0 {
				at = b.to[piece] + off
			}
			var v [8]byte
			if t.mem.ReadAt(v[:size], at) != nil {
				return 0, false
			}
			return binary.LittleEndian.Uint64(v[:]), true
		}
		now := trace.Now()
		for i := range b.call.Pieces {
			p := &b.call.Pieces[i]
			for _, f := range b.call.Writes(i, ret, field) {
				if b.to[i] != 0 {
					d := make([]byte, f.Len)
					if err := t.mem.ReadAt(d, b.to[i]+f.Off); err != nil {
						return fmt.Errorf("bounce %s: %w", b.call.Name, err)
					}
					if err := t.copyOut(d, p.Addr+f.Off); err != nil {
						// The program's protections changed during the
						// call (another thread's mprotect): what the
						// kernel wrote still goes where it was meant to.
						if err := t.mem.WriteAt(d, p.Addr+f.Off); err != nil {
							return fmt.Errorf("bounce %s: %w", b.call.Name, err)
						}
					}
				}
				if err := t.logSyscall(now, p.Addr+f.Off, f.Len, trace.DirWrite, b.call.Name, b.pc, th.tid); err != nil {
					return err
				}
			}
		}
	}
	return t.restoreArgs(th, b.args)
}

// restoreArgs gives a thread at a syscall-exit stop the program's argument
// registers back (the kernel preserves them; only RAX carries the result).
func (t *Tracer) restoreArgs(th *thread, args [6]uint64) error {
	var regs unix.PtraceRegs
	if err := ptrace.GetRegs(th.tid, &regs); err != nil {
		return ignoreGone(err)
	}
	for i, a := range args {
		*argReg(&regs, i) = a
	}
	return ignoreGone(ptrace.SetRegs(th.tid, &regs))
}

// copyIn reads the program's bytes at addr as the kernel would for the
// program (copyProgram).
func (t *Tracer) copyIn(d []byte, addr uint64) error {
	return t.copyProgram(d, addr, false)
}

// copyOut writes bytes into the program's memory at addr, as copyIn reads.
func (t *Tracer) copyOut(d []byte, addr uint64) error {
	return t.copyProgram(d, addr, true)
}

// copyProgram reads (or writes) the program's memory at addr: through the
// alias of a traced shared mapping where there is one (device memory gets
// the kernel's kind of access), through /proc/PID/mem on the other pages of
// ours (armed or disarmed for a call; the program's protection there was
// checked), and with process_vm_readv/writev elsewhere, which honours the
// program's protections as the kernel's own copy would: a part the program
// could not have handed to the kernel fails (EFAULT).
func (t *Tracer) copyProgram(d []byte, addr uint64, write bool) error {
	for len(d) > 0 {
		n := len(d)
		if tm := t.mapAt(addr); tm != nil && tm.alias != nil && addr >= tm.alias.start {
			off := addr - tm.alias.start
			if off < uint64(len(tm.alias.mem)) {
				n = min(n, int(min(tm.end-addr, uint64(len(tm.alias.mem))-off)))
				if write {
					copy(tm.alias.mem[off:], d[:n])
				} else {
					copy(d[:n], tm.alias.mem[off:])
				}
				d, addr = d[n:], addr+uint64(n)
				continue
			}
		}
		// Up to the next traced piece with an alias.
		for _, tm := range t.maps {
			if tm.alias != nil && tm.start > addr && tm.start < addr+uint64(n) {
				n = int(tm.start - addr)
				break
			}
		}
		// Up to where the pages stop (or start) being ours.
		ours := t.engine.Page(addr) != nil
		for a := addr&^(pageSize-1) + pageSize; a < addr+uint64(n); a += pageSize {
			if (t.engine.Page(a) != nil) != ours {
				n = int(a - addr)
				break
			}
		}
		var err error
		switch {
		case ours && write:
			err = t.mem.WriteAt(d[:n], addr)
		case ours:
			err = t.mem.ReadAt(d[:n], addr)
		default:
			err = t.vmCopy(d[:n], addr, write)
		}
		if err != nil {
			return err
		}
		d, addr = d[n:], addr+uint64(n)
	}
	return nil
}

// vmCopy copies between d and the program's memory at addr with
// process_vm_readv or process_vm_writev, all of it or an error.
func (t *Tracer) vmCopy(d []byte, addr uint64, write bool) error {
	local := []unix.Iovec{{Base: &d[0], Len: uint64(len(d))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(d)}}
	var n int
	var err error
	if write {
		n, err = unix.ProcessVMWritev(t.pid, local, remote, 0)
	} else {
		n, err = unix.ProcessVMReadv(t.pid, local, remote, 0)
	}
	if err == nil && n != len(d) {
		err = syscall.EFAULT
	}
	if err != nil {
		return fmt.Errorf("process %d memory at %#x: %w", t.pid, addr, err)
	}
	return nil
}

// scratchFor returns free scratch memory of at least size bytes in the
// current process, marked busy. When there is none it maps some by
// injecting mmap into th, which is at a syscall's entry: the injection
// makes th execute its call again, so it returns nil, and the call stops
// here again.
func (t *Tracer) scratchFor(th *thread, size uint64) (*scratch, error) {
	for _, s := range t.scratch {
		if !s.busy && s.size >= size {
			s.busy = true
			return s, nil
		}
	}
	t.injTID = th.tid
	if _, err := t.newScratch(size); err != nil {
		return nil, err
	}
	return nil, t.resumeInSyscall(th)
}

// newScratch maps scratch memory of at least size bytes in the current
// process, through t.injTID, and returns it free.
func (t *Tracer) newScratch(size uint64) (*scratch, error) {
	size = max(pageAlign(size), 64<<10)
	r, err := t.inj.Syscall(t.injTID, unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE, ^uint64(0), 0)
	if err != nil {
		return nil, ignoreGone(err)
	}
	if r < 0 && r > -4096 {
		return nil, fmt.Errorf("map scratch memory of %d bytes in process %d: %w", size, t.pid, syscall.Errno(-r))
	}
	s := &scratch{addr: uint64(r), size: size}
	t.scratch = append(t.scratch, s)
	return s, nil
}

// filterGap: traced extents closer than this share a filter range.
const filterGap = 64 << 10

// coverArmed makes the current process's system calls that may reach its
// armed pages stop, in a spawned program: a range filter (package
// sysfilter) for the armed extents no filter covers yet, installed through
// t.injTID (a thread stopped outside a system call's entry) with
// SECCOMP_FILTER_FLAG_TSYNC, so that every thread gets it at once. A piece
// inside a --range is covered by the whole range, for what may arm there
// later (the heap's growth). It runs where new pages get armed, before
// the thread that armed them resumes: no other thread can know their
// addresses yet. Filters cannot be removed: one outliving its range costs
// stops the tracer answers by resuming. When a filter cannot be installed
// (the kernel's size limit, privileges dropped), the process falls back
// to a stop at every system call, as in attach mode.
func (t *Tracer) coverArmed() error {
	if !t.spawned || t.engine == nil || t.syscallStops {
		return nil
	}
	var need []sysfilter.Range
	for _, p := range t.engine.Probes() {
		r := sysfilter.Range{Start: p.Addr &^ (pageSize - 1), End: pageAlign(p.End())}
		for _, u := range t.cfg.Select.Ranges {
			if u.Addr <= p.Addr && p.End() <= u.Addr+u.Len {
				r = sysfilter.Range{Start: u.Addr &^ (pageSize - 1), End: pageAlign(u.Addr + u.Len)}
			}
		}
		if !t.filtered(r) {
			need = append(need, r)
		}
	}
	if len(need) == 0 {
		return nil
	}
	slices.SortFunc(need, func(a, b sysfilter.Range) int { return cmp.Compare(a.Start, b.Start) })
	merged := need[:1]
	for _, r := range need[1:] {
		last := &merged[len(merged)-1]
		if r.Start <= last.End+filterGap {
			last.End = max(last.End, r.End)
			continue
		}
		merged = append(merged, r)
	}
	for len(merged) > 0 {
		n := min(len(merged), sysfilter.MaxRanges)
		if err := t.installFilter(merged[:n]); err != nil {
			return err
		}
		merged = merged[n:]
	}
	return nil
}

// filtered reports whether a filter of the current process covers r.
func (t *Tracer) filtered(r sysfilter.Range) bool {
	for _, c := range t.filters {
		if c.Start <= r.Start && r.End <= c.End {
			return true
		}
	}
	return false
}

// installFilter stacks a range filter on every thread of the current
// process, or switches it to a stop at every system call.
func (t *Tracer) installFilter(ranges []sysfilter.Range) error {
	prog, err := sysfilter.Ranges(ranges)
	if err != nil {
		return err
	}
	if t.filterInsns+len(prog)+sysfilter.Overhead > sysfilter.MaxInsns {
		return t.stopEverySyscall("its system-call filters would exceed the kernel's limit")
	}
	buf := make([]byte, 16+8*len(prog))
	binary.LittleEndian.PutUint16(buf, uint16(len(prog)))
	for i, f := range prog {
		o := buf[16+8*i:]
		binary.LittleEndian.PutUint16(o, f.Code)
		o[2], o[3] = f.Jt, f.Jf
		binary.LittleEndian.PutUint32(o[4:], f.K)
	}
	var s *scratch
	for _, c := range t.scratch {
		if !c.busy && c.size >= uint64(len(buf)) {
			s = c
			break
		}
	}
	if s == nil {
		if s, err = t.newScratch(uint64(len(buf))); err != nil {
			return err
		}
	}
	binary.LittleEndian.PutUint64(buf[8:], s.addr+16)
	if err := t.mem.WriteAt(buf, s.addr); err != nil {
		return fmt.Errorf("write seccomp filter: %w", err)
	}
	r, err := t.inj.Syscall(t.injTID, unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, s.addr)
	if err != nil {
		return ignoreGone(err)
	}
	switch {
	case r > 0:
		return t.stopEverySyscall(fmt.Sprintf("its thread %d could not take a system-call filter", r))
	case r < 0:
		return t.stopEverySyscall(fmt.Sprintf("a system-call filter could not be installed: %v", syscall.Errno(-r)))
	}
	t.filters = append(t.filters, ranges...)
	t.filterInsns += len(prog) + sysfilter.Overhead
	return nil
}

// stopEverySyscall makes every thread of the current process stop at each
// system call, so that those reaching traced memory are served.
func (t *Tracer) stopEverySyscall(why string) error {
	t.syscallStops = true
	t.warnOnce(fmt.Sprintf("process %d: %s; it now stops at every system call (slower)", t.pid, why))
	// Running threads were resumed without syscall stops: stop them and
	// resume them with.
	var except *thread
	if th := t.threads[t.injTID]; th != nil {
		except = th
	}
	if err := t.stopOthers(except); err != nil {
		return err
	}
	return t.resumeOthers()
}

// unmapScratch removes the current process's scratch memory (through
// t.injTID), for detaching; memory a call still uses (one the kernel will
// restart with our pointers) stays.
func (t *Tracer) unmapScratch() error {
	var kept []*scratch
	for _, s := range t.scratch {
		if s.busy {
			kept = append(kept, s)
			continue
		}
		if r, err := t.inj.Syscall(t.injTID, unix.SYS_MUNMAP, s.addr, s.size); err != nil {
			return ignoreGone(err)
		} else if r < 0 {
			return fmt.Errorf("unmap scratch memory at %#x: %w", s.addr, syscall.Errno(-r))
		}
	}
	t.scratch = kept
	return nil
}

// isScratch reports whether addr is in the tracer's scratch memory.
func (t *Tracer) isScratch(addr uint64) bool {
	for _, s := range t.scratch {
		if addr >= s.addr && addr-s.addr < s.size {
			return true
		}
	}
	return false
}

// expose runs th's call with the armed pages it reaches disarmed (see the
// comment at the top). The pages are disarmed through th, at the call's
// entry (which makes it run its call again), with every other thread of
// its memory stopped or parked; they are armed again through th at the
// call's exit, or, if another thread must run before (th sleeps in its
// call, or takes too long), through the first other thread the loop
// resumes, just before it runs (rearmBefore): a thread whose stop has
// been handled, whatever it was, takes an injection safely then.
func (t *Tracer) expose(th *thread, call *sysmem.Call, pages []*kmmio.FaultPage, pc uint64) error {
	e := &exposure{call: *call, pages: pages, pc: pc}
	now := trace.Now()
	for i := range call.Pieces {
		if p := &call.Pieces[i]; p.Dir&sysmem.Read != 0 && call.Class != sysmem.Unknown {
			if err := t.logSyscall(now, p.Addr, p.Len, trace.DirRead, call.Name, pc, th.tid); err != nil {
				return err
			}
		}
	}
	others := t.othersInMemory(th)
	if others {
		if err := t.stopOthers(th); err != nil {
			return err
		}
	}
	th.exposed = e
	t.exposer = th
	t.injTID = th.tid
	if err := t.disarmPages(pages); err != nil {
		return err
	}
	if err := t.resumeInSyscall(th); err != nil {
		return err
	}
	if !others {
		// Alone in its memory: the entry comes back (serveEntry), then
		// the exit, which arms the pages again.
		return nil
	}
	ws, status := t.waitInCall(th, call.Class == sysmem.FutexWait)
	e.entered = true
	switch status {
	case callReturned, callOther:
		// Its exit stop (or whatever came) is handled by the loop; the
		// exit ends the exposure (endExposure).
		t.queue = append(t.queue, stop{th.tid, ws})
		th.queued, th.held = true, true
	case callAsleep:
		th.parked = true
	case callSlow:
		th.parked = true
		t.warnOnce(fmt.Sprintf("%s reached traced memory and ran longer than %v with the other threads stopped: it goes on with that memory traced again, where the kernel cannot reach it", call.Name, exposeTimeout))
	}
	return t.resumeOthers()
}

// rearmBefore arms again, through th, the pages an exposed call of another
// thread of th's memory has disarmed, before th runs (see expose).
func (t *Tracer) rearmBefore(th *thread) error {
	p := th.proc
	x := p.exposer
	if x == nil || x == th {
		return nil
	}
	p.exposer = nil
	if x.exposed == nil || x.exposed.rearmed {
		return nil
	}
	x.exposed.rearmed = true
	cur := t.process
	t.use(p)
	defer t.use(cur)
	t.injTID = th.tid
	return t.rearmPages(x.exposed.pages)
}

// How a thread left running in an exposed call is found.
const (
	callReturned = iota // at its exit stop
	callAsleep          // sleeping in the call (a futex wait)
	callSlow            // still in the call after exposeTimeout
	callOther           // another stop (the thread died, a signal)
)

// waitInCall waits for th, running its call, to reach the call's exit
// stop, or (asleep) to sleep in it, at most exposeTimeout. Entry and
// seccomp stops (of the call run again after the injection) are passed.
func (t *Tracer) waitInCall(th *thread, asleep bool) (unix.WaitStatus, int) {
	deadline := time.Now().Add(exposeTimeout)
	pause := 20 * time.Microsecond
	for {
		got, ws, err := ptrace.Wait(th.tid, true)
		if err != nil {
			return ws, callOther
		}
		if got == th.tid {
			if !ptrace.IsSyscallStop(ws) && ptrace.Event(ws) != unix.PTRACE_EVENT_SECCOMP {
				return ws, callOther
			}
			if info, err := ptrace.GetSyscallInfo(th.tid); err == nil && info.Op == ptrace.SyscallExit {
				return ws, callReturned
			}
			if err := ptrace.Syscall(th.tid, 0); err != nil {
				return ws, callOther
			}
			continue
		}
		if asleep && sleeping(th.pid, th.tid) {
			return ws, callAsleep
		}
		if time.Now().After(deadline) {
			return ws, callSlow
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Millisecond)
	}
}

// sleeping reports whether a thread sleeps interruptibly (state S) in the
// futex code (where the kernel says: wchan): a futex wait past its read of
// the word.
func sleeping(pid, tid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid)
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) || s[i+2] != 'S' {
		return false
	}
	w, err := os.ReadFile(dir + "/wchan")
	return err != nil || len(w) == 0 || string(w) == "0" || strings.Contains(string(w), "futex")
}

// endExposure finishes an exposed call at its exit stop: the pages are
// armed again (if they are not yet) and the kernel's writes logged.
func (t *Tracer) endExposure(th *thread, ret int64) error {
	e := th.exposed
	th.exposed = nil
	if t.exposer == th {
		t.exposer = nil
	}
	var err error
	if !e.rearmed {
		e.rearmed = true
		t.injTID = th.tid
		err = t.rearmPages(e.pages)
	}
	if e.entered && !restarting(ret) {
		now := trace.Now()
		for i := range e.call.Pieces {
			p := &e.call.Pieces[i]
			dir := trace.DirWrite
			if e.call.Class == sysmem.Unknown {
				dir = trace.DirRead | trace.DirWrite
			}
			for _, f := range e.call.Writes(i, ret, func(piece int, off uint64, size int) (uint64, bool) {
				var v [8]byte
				if t.mem.ReadAt(v[:size], e.call.Pieces[piece].Addr+off) != nil {
					return 0, false
				}
				return binary.LittleEndian.Uint64(v[:]), true
			}) {
				if lerr := t.logSyscall(now, p.Addr+f.Off, f.Len, dir, e.call.Name, e.pc, th.tid); lerr != nil && err == nil {
					err = lerr
				}
			}
		}
	}
	return err
}

// disarmPages gives pages the program's protection for a call (through
// t.injTID).
func (t *Tracer) disarmPages(pages []*kmmio.FaultPage) error {
	for _, fp := range pages {
		if err := t.engine.Disarm(fp); err != nil {
			return err
		}
	}
	return nil
}

// rearmPages arms pages disarmed for a call, those still in use.
func (t *Tracer) rearmPages(pages []*kmmio.FaultPage) error {
	var first error
	for _, fp := range pages {
		if err := t.engine.Rearm(fp); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// resumeInSyscall resumes th into its call, to stop at the call's exit.
func (t *Tracer) resumeInSyscall(th *thread) error {
	th.held = false
	return ignoreGone(ptrace.Syscall(th.tid, 0))
}

// logSyscall writes SYS records for the part of [addr, addr+n) inside
// traced maps and page-protection watches.
func (t *Tracer) logSyscall(now int64, addr, n uint64, dir trace.Dir, name string, pc uint64, tid int) error {
	end := addr + n
	if end < addr {
		end = ^uint64(0)
	}
	var first error
	t.engine.ProbesIn(addr, end-addr, func(p *kmmio.Probe) {
		lo, hi := max(addr, p.Addr), min(end, p.End())
		if lo >= hi || first != nil {
			return
		}
		r := trace.Record{Kind: trace.KindSyscall, Time: now, Len: hi - lo, Dir: dir, Text: name, PC: pc, TID: int32(tid)}
		switch d := p.Data.(type) {
		case *tmap:
			r.MapID, r.Phys = d.id, d.physOf(lo)
		case *watchState:
			r.MapID, r.Phys = d.id, lo
		default:
			return
		}
		first = t.emit(&r)
	})
	return first
}

// warnOnce gives a warning once per session and text.
func (t *Tracer) warnOnce(s string) {
	if t.warned == nil {
		t.warned = map[string]bool{}
	}
	if !t.warned[s] {
		t.warned[s] = true
		t.warn(s)
	}
}
