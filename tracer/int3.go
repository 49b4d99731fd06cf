package tracer

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Execute watches that no debug register serves are software breakpoints,
// as debuggers place them: the first byte of the watched instruction is
// replaced by int3 (0xCC) through /proc/PID/mem. A thread that reaches it
// stops with SIGTRAP (si_code SI_KERNEL) and RIP one past the breakpoint;
// the tracer logs the X record and then executes the displaced instruction
// for the thread:
//
//   - a no-op (endbr64, nop) or a register push is done by the tracer
//     itself, and the thread resumes after it;
//   - an instruction the emulator knows (package internal/x86: loads,
//     stores, read-modify-writes, compares) is emulated, with accesses to
//     armed pages logged as for any fault;
//   - anything else is single-stepped with the original byte back in place
//     and every other thread stopped, so that no thread runs past the
//     watched address unseen, then the int3 goes back.
//
// Exact and unlimited in number, on any host. Invariants:
//
//   - A breakpoint's original byte is in the program's memory only while
//     every thread but the one stepping is stopped.
//   - The tracer never reads the program's code without putting the
//     original bytes back in its copy (readCode), so decoding, the
//     backward search of data traps and the perf reader see the program's
//     instructions.
//   - When tracing ends in a live process (detach), every breakpoint's
//     original byte is written back with every thread stopped, and a
//     thread stopped on one of them (reported or still pending) gets its
//     RIP moved back onto the instruction and no SIGTRAP.
//   - A fork child inherits the int3 bytes (its text is a copy-on-write
//     copy): the originals are written back into an untraced child at its
//     first stop, before it runs. A vfork child shares the program's memory
//     until it execs: its hits are the program's. exec discards them.

// int3Byte is the x86 breakpoint instruction.
const int3Byte = 0xcc

// siKernel is the si_code of a SIGTRAP from an int3 (SI_KERNEL).
const siKernel = 0x80

// breakpoint is one int3 in the program's code, for one or more execute
// watches at that address.
type breakpoint struct {
	addr    uint64
	orig    byte
	watches []*watchState
}

// codeShadow maps a breakpoint's address to its original byte. It is
// replaced, never changed, so that the perf reader goroutine can read it
// while the tracer loop places breakpoints.
type codeShadow map[uint64]byte

// placeBreakpoint serves an execute watch by an int3 at st.Addr.
func (t *Tracer) placeBreakpoint(st *watchState) error {
	ws := t.watch
	if bp := ws.bps[st.Addr]; bp != nil {
		bp.watches = append(bp.watches, st)
		return nil
	}
	if a := t.inj.SyscallAddr; st.Addr+1 > a && st.Addr < a+2 {
		return fmt.Errorf("watch %s: cannot watch execution at %#x: the tracer runs its system calls there", st.Name, st.Addr)
	}
	var orig [1]byte
	if err := t.mem.ReadAt(orig[:], st.Addr); err != nil {
		return fmt.Errorf("watch %s: read code at %#x: %w", st.Name, st.Addr, err)
	}
	if err := t.mem.WriteAt([]byte{int3Byte}, st.Addr); err != nil {
		return fmt.Errorf("watch %s: write int3 at %#x: %w", st.Name, st.Addr, err)
	}
	ws.bps[st.Addr] = &breakpoint{addr: st.Addr, orig: orig[0], watches: []*watchState{st}}
	t.publishShadow()
	return nil
}

// publishShadow makes the current breakpoints' original bytes visible to
// readCode in every goroutine.
func (t *Tracer) publishShadow() {
	s := codeShadow{}
	if t.watch != nil {
		for a, bp := range t.watch.bps {
			s[a] = bp.orig
		}
	}
	t.optShadow(s)
	t.process.shadow.Store(&s)
}

// unshadow puts the original bytes of p's breakpoints back into b, code
// read from addr. Safe from any goroutine.
func (p *process) unshadow(b []byte, addr uint64) {
	s := p.shadow.Load()
	if s == nil || len(*s) == 0 {
		return
	}
	for a, orig := range *s {
		if a >= addr && a-addr < uint64(len(b)) {
			b[a-addr] = orig
		}
	}
}

// readCode reads p's code through m as the program wrote it: whole, or
// what is readable of it (the count returned). Safe from any goroutine.
func (p *process) readCode(m *ptrace.Mem, b []byte, addr uint64) int {
	n := m.ReadPartial(b, addr)
	p.unshadow(b[:n], addr)
	return n
}

// breakpointTrap handles a SIGTRAP stop that is one of our int3s, and
// reports whether it was.
func (t *Tracer) breakpointTrap(th *thread) (bool, error) {
	if t.watch == nil || len(t.watch.bps) == 0 {
		return false, nil
	}
	if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
		return true, ignoreGone(err)
	}
	bp := t.watch.bps[th.regs.Rip-1]
	if bp == nil {
		return false, nil
	}
	si, err := ptrace.GetSiginfo(th.tid)
	if err != nil {
		return true, ignoreGone(err)
	}
	if si.Code != siKernel {
		return false, nil // a single-step or debug-register trap that ends there
	}
	th.regs.Rip = bp.addr
	now := trace.Now()
	for _, st := range bp.watches {
		atomic.AddUint64(&st.stats.Execs, 1)
		t.Counts.Reads.Add(1) // counted with the accesses for the progress line
		if err := t.emit(&trace.Record{Kind: trace.KindExec, Time: now, MapID: st.id, Phys: bp.addr, PC: bp.addr, TID: int32(th.tid)}); err != nil {
			return true, err
		}
	}
	return true, t.executeDisplaced(th, bp)
}

// executeDisplaced runs the instruction an int3 displaced for thread th,
// stopped with RIP on it, and resumes th after it.
func (t *Tracer) executeDisplaced(th *thread, bp *breakpoint) error {
	var code [15]byte
	n := t.process.readCode(t.mem, code[:], bp.addr)
	if n == 0 {
		return fmt.Errorf("read code at breakpoint %#x: unreadable", bp.addr)
	}
	if l, ok := nopLength(code[:n]); ok {
		th.regs.Rip += uint64(l)
		return t.setRegsAndResume(th)
	}
	if reg, l, ok := pushRegister(code[:n]); ok {
		v, _ := x86.RegValue(&th.regs, reg)
		var b [8]byte
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		t.hit.th, t.hit.pc = th, bp.addr
		if err := t.access(th.regs.Rsp-8, b[:], true); err == nil {
			th.regs.Rsp -= 8
			th.regs.Rip += uint64(l)
			return t.setRegsAndResume(th)
		}
		// The stack is not writable: let the CPU fault, stepping.
	}
	in, err := x86.Decode(code[:n])
	if err != nil {
		in = nil
	}
	if in != nil && in.Emulable() && !in.NeedsVec() {
		regs := th.regs
		t.hit.th, t.hit.pc = th, bp.addr
		if t.engine != nil {
			t.engine.BeginHit()
		}
		err := x86.Emulate(in, &regs, &t.vec, hitMemory{t})
		if t.engine != nil {
			if e := t.engine.EndHit(); err == nil {
				err = e
			}
		}
		if err == nil {
			th.regs = regs
			if err := t.setRegsAndResume(th); err != nil {
				return err
			}
			return t.err
		}
		if err == errProgramFault {
			if err := ptrace.SetRegs(th.tid, &th.regs); err != nil {
				return ignoreGone(err)
			}
			return t.resume(th, int(unix.SIGSEGV))
		}
	}
	return t.stepDisplaced(th, bp, in)
}

func (t *Tracer) setRegsAndResume(th *thread) error {
	if err := ptrace.SetRegs(th.tid, &th.regs); err != nil {
		return ignoreGone(err)
	}
	return t.resume(th, 0)
}

// stepDisplaced single-steps the original instruction at bp with every
// other thread stopped, then puts the int3 back and resumes them all.
func (t *Tracer) stepDisplaced(th *thread, bp *breakpoint, in *x86.Inst) error {
	if err := t.stopOthers(th); err != nil {
		return err
	}
	sig, err := t.stepOriginal(th, bp, in)
	if rerr := t.resumeOthers(); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	return t.resume(th, sig)
}

// stepOriginal is stepDisplaced with the others stopped. It returns the
// signal to deliver to th.
func (t *Tracer) stepOriginal(th *thread, bp *breakpoint, in *x86.Inst) (sig int, err error) {
	if err := ptrace.SetRegs(th.tid, &th.regs); err != nil {
		return 0, ignoreGone(err)
	}
	if err := t.mem.WriteAt([]byte{bp.orig}, bp.addr); err != nil {
		return 0, fmt.Errorf("restore code at breakpoint %#x: %w", bp.addr, err)
	}
	// The int3 goes back whatever happens, unless the thread's process is
	// gone with its memory.
	defer func() {
		if werr := t.mem.WriteAt([]byte{int3Byte}, bp.addr); werr != nil && err == nil && !t.over() {
			err = fmt.Errorf("put back breakpoint %#x: %w", bp.addr, werr)
		}
	}()
	si, err := t.inj.Step(th.tid)
	if err != nil {
		return 0, ignoreGone(err)
	}
	if si.Signo == int32(unix.SIGTRAP) {
		return 0, nil
	}
	// The instruction faulted. On an armed page (a watched or traced
	// variable), execute it as kmmio does; otherwise it is the program's
	// own fault, delivered with RIP on the instruction.
	if fp := t.engineFaultPage(si); fp != nil {
		t.hit.th, t.hit.pc = th, bp.addr
		t.engine.BeginHit()
		sig, err := t.stepAccess(th, in, fp, si.Addr)
		if e := t.engine.EndHit(); err == nil {
			err = e
		}
		return sig, err
	}
	return int(si.Signo), nil
}

// engineFaultPage returns the armed page an access fault was on, or nil.
func (t *Tracer) engineFaultPage(si ptrace.Siginfo) *kmmio.FaultPage {
	if t.engine == nil || si.Signo != int32(unix.SIGSEGV) || si.Code != ptrace.SegvAccErr {
		return nil
	}
	if fp := t.engine.Page(si.Addr); fp != nil && fp.Armed {
		return fp
	}
	return nil
}

// removeBreakpoints writes every breakpoint's original byte back, for
// detaching; every thread is stopped.
func (t *Tracer) removeBreakpoints() error {
	if t.watch == nil || len(t.watch.bps) == 0 {
		return nil
	}
	var first error
	for a, bp := range t.watch.bps {
		if err := t.mem.WriteAt([]byte{bp.orig}, a); err != nil && first == nil {
			first = fmt.Errorf("remove breakpoint %#x: %w", a, err)
		}
	}
	clear(t.watch.bps)
	t.publishShadow()
	return first
}

// restoreBreakpointsIn writes the original bytes into a fork child, which
// inherited the int3s but is not traced.
func (t *Tracer) restoreBreakpointsIn(pid int) error {
	if t.watch == nil || len(t.watch.bps) == 0 {
		return nil
	}
	m, err := ptrace.OpenMem(pid)
	if err != nil {
		return ignoreGone(err)
	}
	defer m.Close()
	for a, bp := range t.watch.bps {
		if err := m.WriteAt([]byte{bp.orig}, a); err != nil {
			return ignoreGone(fmt.Errorf("remove breakpoint %#x from child %d: %w", a, pid, err))
		}
	}
	return nil
}

// rewindBreakpointTrap moves a thread stopped by one of our int3s (its
// SIGTRAP reported, or just taken) back onto the instruction, so that it
// runs it once the original byte is back; it reports whether it did, in
// which case the SIGTRAP must not be delivered.
func (t *Tracer) rewindBreakpointTrap(tid int) bool {
	if t.watch == nil || len(t.watch.bps) == 0 {
		return false
	}
	si, err := ptrace.GetSiginfo(tid)
	if err != nil || si.Signo != int32(unix.SIGTRAP) || si.Code != siKernel {
		return false
	}
	var regs unix.PtraceRegs
	if ptrace.GetRegs(tid, &regs) != nil || t.watch.bps[regs.Rip-1] == nil {
		return false
	}
	regs.Rip--
	return ptrace.SetRegs(tid, &regs) == nil
}

// nopLength recognises instructions with no effect but advancing RIP:
// endbr64, nop, and the multi-byte nops (0F 1F /0, with a 66 prefix).
func nopLength(code []byte) (int, bool) {
	switch {
	case len(code) >= 4 && code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa:
		return 4, true // endbr64
	case len(code) >= 1 && code[0] == 0x90:
		return 1, true
	}
	in, err := x86asm.Decode(code, 64)
	if err == nil && in.Op == x86asm.NOP {
		return in.Len, true
	}
	return 0, false
}

// pushRegister recognises push r64 (50+r, with REX.B for r8-r15), the
// usual first instruction of a function without endbr64.
func pushRegister(code []byte) (reg x86asm.Reg, n int, ok bool) {
	rexB := 0
	i := 0
	if len(code) > 0 && code[0]&0xf0 == 0x40 {
		if code[0]&0x08 != 0 {
			return 0, 0, false // REX.W push is still push r64, but rare; step it
		}
		rexB = int(code[0]&1) << 3
		i = 1
	}
	if len(code) <= i || code[i]&0xf8 != 0x50 {
		return 0, 0, false
	}
	// x86asm numbers the 64-bit registers in encoding order from RAX.
	return x86asm.RAX + x86asm.Reg(rexB|int(code[i]&7)), i + 1, true
}
