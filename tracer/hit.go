package tracer

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// errProgramFault means the access being executed for the program is one
// the program may not make (a store to a page it mapped read-only, memory
// that is not mapped): the program gets its SIGSEGV, as it would untraced.
var errProgramFault = errors.New("access not permitted to the program")

// hitState is the fault being handled; the emulator's memory accesses and the
// probes' handlers read it.
type hitState struct {
	th  *thread
	pc  uint64
	hit kmmio.Hit
	buf [x86MaxAccess]byte
}

const x86MaxAccess = 64

// fault handles a SIGSEGV stop: a hit when it is an access fault on an armed
// page, else the program's own signal, delivered.
func (t *Tracer) fault(th *thread) error {
	if t.engine == nil {
		return t.resume(th, int(unix.SIGSEGV))
	}
	if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
		return ignoreGone(err)
	}
	if t.opt != nil {
		// A fault in a detour's own code (optimize.go).
		if ours, err := t.optFault(th); ours || err != nil {
			return err
		}
	}
	// The hot path skips PTRACE_GETSIGINFO: when the instruction at RIP is
	// known and its memory operand lies on an armed page, the fault is
	// ours. (A SIGSEGV that another process sent with kill at that very
	// instruction would be taken for the access; the access itself is still
	// performed exactly.) Otherwise the siginfo decides.
	var fp *kmmio.FaultPage
	var addr uint64
	if in, ok := t.icache[th.regs.Rip]; ok && in != nil {
		if a, n, _, _, ok := in.MemOperand(&th.regs); ok {
			for _, p := range [2]uint64{a, a + uint64(max(n, 1)) - 1} {
				if f := t.engine.Page(p); f != nil && f.Armed {
					fp, addr = f, p
					break
				}
			}
		}
	}
	if fp == nil {
		si, err := ptrace.GetSiginfo(th.tid)
		if err != nil {
			return ignoreGone(err)
		}
		if si.FromKernel() && si.Code == ptrace.SegvAccErr {
			fp, addr = t.engine.Page(si.Addr), si.Addr
		}
		if fp != nil && !fp.Armed {
			// Taken on the armed page, which a system call of another
			// thread has had disarmed since (sysmem.go): the thread runs
			// the instruction again once the page is armed (resume).
			return t.resume(th, 0)
		}
		if fp == nil || !fp.Armed {
			return t.resume(th, int(unix.SIGSEGV))
		}
	}
	// An instruction that traps often gets an optimized probe; it then
	// runs again, through its detour, since its access has not happened.
	if patched, err := t.optHot(th, th.regs.Rip, addr); err != nil || patched {
		if err != nil {
			return err
		}
		return t.resume(th, 0)
	}
	t.engine.BeginHit()
	err := t.execute(th, fp, addr)
	if e := t.engine.EndHit(); err == nil {
		err = e
	}
	if err == nil {
		err = t.err // a record the log could not take
	}
	return err
}

// execute performs the faulting instruction of th for it, by emulation or
// else by single-stepping, and resumes th.
func (t *Tracer) execute(th *thread, fp *kmmio.FaultPage, addr uint64) error {
	in := t.decode(th.regs.Rip)
	t.hit.th, t.hit.pc = th, t.origPC(th.regs.Rip)
	if in == nil || !in.Emulable() {
		return t.step(th, in, fp, addr)
	}
	regs := th.regs
	if in.NeedsVec() {
		n, err := ptrace.GetXState(th.tid, t.xsave)
		if err != nil {
			return ignoreGone(err)
		}
		if err := t.vec.FromXSave(t.xsave[:n]); err != nil {
			return err
		}
	}
	err := x86.Emulate(in, &regs, &t.vec, hitMemory{t})
	switch {
	case errors.Is(err, errProgramFault):
		return t.resume(th, int(unix.SIGSEGV))
	case errors.Is(err, x86.ErrUnsupported):
		return t.step(th, in, fp, addr)
	case err != nil:
		return fmt.Errorf("emulate %v at %#x: %w", in, th.regs.Rip, err)
	}
	if in.NeedsVec() {
		if err := t.vec.ToXSave(t.xsave); err != nil {
			return err
		}
		if err := ptrace.SetXState(th.tid, t.xsave); err != nil {
			return ignoreGone(err)
		}
	}
	th.regs = regs
	if err := ptrace.SetRegs(th.tid, &th.regs); err != nil {
		return ignoreGone(err)
	}
	t.Counts.Emulated.Add(1)
	return t.resume(th, 0)
}

// decode returns the instruction at pc, or nil when it cannot be decoded.
// Decoded instructions are cached by address until the program's code may
// have changed (any mapping call, exec).
func (t *Tracer) decode(pc uint64) *x86.Inst {
	if in, ok := t.icache[pc]; ok {
		return in
	}
	n := t.process.readCode(t.mem, t.code[:15], pc)
	in, err := x86.Decode(t.code[:n])
	if err != nil {
		in = nil
	}
	t.icache[pc] = in
	return in
}

// hitMemory performs the emulator's accesses for the thread being handled.
type hitMemory struct{ t *Tracer }

func (m hitMemory) Load(addr uint64, b []byte) error  { return m.t.access(addr, b, false) }
func (m hitMemory) Store(addr uint64, b []byte) error { return m.t.access(addr, b, true) }

// CompareAndSwap is atomic on alias mappings; on /proc/PID/mem it is not
// atomic against other running threads of the program (see docs/RECORD.md).
func (m hitMemory) CompareAndSwap(addr uint64, old, new []byte) (bool, error) {
	t := m.t
	if err := t.permit(addr, len(old), true); err != nil {
		return false, err
	}
	var ok bool
	if p := t.aliasPtr(addr, len(old)); p != nil {
		ok = x86.CompareAndSwapAt(p, old, new)
	} else {
		cur := t.hit.buf[:len(old)]
		if err := t.mem.ReadAt(cur, addr); err != nil {
			return false, errProgramFault
		}
		if string(cur) == string(old) {
			if err := t.mem.WriteAt(new, addr); err != nil {
				return false, errProgramFault
			}
			ok = true
		}
	}
	if ok {
		t.probed(addr, new, true)
	}
	return ok, nil
}

// access performs one load or store of the emulated instruction with its
// exact width, and logs it if it touches a probe.
func (t *Tracer) access(addr uint64, b []byte, write bool) error {
	if err := t.permit(addr, len(b), write); err != nil {
		return err
	}
	if p := t.aliasPtr(addr, len(b)); p != nil {
		if write {
			x86.StoreAt(p, b)
		} else {
			x86.LoadAt(p, b)
		}
	} else {
		var err error
		if write {
			err = t.mem.WriteAt(b, addr)
		} else {
			err = t.mem.ReadAt(b, addr)
		}
		if err != nil {
			return errProgramFault
		}
	}
	t.probed(addr, b, write)
	return nil
}

// permit checks the access against the protection the program gave every
// armed page it touches. Other pages are checked by the kernel when
// /proc/PID/mem cannot reach them; /proc/PID/mem itself ignores protections,
// so a store through it to a read-only page the program never armed is
// not refused (such an instruction would have to fault first on an armed
// page and then touch a read-only one).
func (t *Tracer) permit(addr uint64, n int, write bool) error {
	for a := addr &^ (pageSize - 1); a < addr+uint64(n); a += pageSize {
		if fp := t.engine.Page(a); fp != nil && !fp.Allows(write) {
			return errProgramFault
		}
	}
	return nil
}

// aliasPtr returns the tracer's address for [addr, addr+n) when the whole
// access lies in one aliased mapping, or nil.
func (t *Tracer) aliasPtr(addr uint64, n int) unsafe.Pointer {
	tm := t.mapAt(addr)
	if tm == nil || tm.alias == nil {
		return nil
	}
	a := tm.alias
	off := addr - a.start
	if off+uint64(n) > uint64(len(a.mem)) {
		return nil
	}
	return unsafe.Pointer(&a.mem[off])
}

// probed runs the handlers of the probe an access touched, if any, and
// logs it for a debug-register watch it touched: the tracer performed the
// access, so the CPU's debug registers never saw it.
func (t *Tracer) probed(addr uint64, b []byte, write bool) {
	if t.watch != nil {
		t.watchedAccess(addr, b, write)
	}
	p := t.engine.ProbeAt(addr)
	if p == nil {
		p = t.engine.ProbeAt(addr + uint64(len(b)) - 1)
	}
	if p == nil {
		return
	}
	h := &t.hit.hit
	*h = kmmio.Hit{Probe: p, TID: t.hit.th.tid, PC: t.hit.pc, Addr: addr, Width: len(b), Write: write, Value: b}
	if p.Pre != nil {
		p.Pre(h)
	}
	if p.Post != nil {
		p.Post(h)
	}
}

// logHit is the Post handler of the tracer's probes: one R or W record.
func (t *Tracer) logHit(h *kmmio.Hit) {
	tm := h.Probe.Data.(*tmap)
	if err := t.logAccess(tm, h.TID, h.PC, h.Addr, h.Write, h.Value, trace.Now()); err != nil && t.err == nil {
		t.err = err
	}
}

// logAccess writes the R or W record of an access of thread tid at pc to
// addr in traced piece tm, and counts it: the one place both paths (a
// trap, a detour's slow path) make an access's record.
func (t *Tracer) logAccess(tm *tmap, tid int, pc, addr uint64, write bool, value []byte, now int64) error {
	r := trace.Record{Kind: trace.KindRead, Width: uint8(len(value)), TID: int32(tid), MapID: tm.id,
		Time: now, Phys: tm.physOf(addr), PC: pc}
	copy(r.Value[:], value)
	if write {
		r.Kind = trace.KindWrite
		t.Counts.Writes.Add(1)
		tm.stats.Writes++
	} else {
		t.Counts.Reads.Add(1)
		tm.stats.Reads++
	}
	return t.emit(&r)
}

// physOf is the bus address of a traced virtual address.
func (tm *tmap) physOf(addr uint64) uint64 {
	if addr < tm.start {
		return tm.phys
	}
	return tm.phys + (addr - tm.start)
}

// step executes the faulting instruction the way the kernel's kmmio does:
// with every other thread stopped, it disarms the page, single-steps, and
// arms it again. An access straddling into another armed page faults once
// more during the step; that page is disarmed too and the step retried, so
// the access still runs as one instruction and gets one record.
func (t *Tracer) step(th *thread, in *x86.Inst, fp *kmmio.FaultPage, faultAddr uint64) error {
	if err := t.stopOthers(th); err != nil {
		return err
	}
	sig, err := t.stepAccess(th, in, fp, faultAddr)
	if rerr := t.resumeOthers(); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	return t.resume(th, sig)
}

// stepAccess is step with the other threads stopped: it steps th, which
// faulted on fp at faultAddr, through its instruction, logs the access,
// and returns the signal to deliver when th resumes (the program's own
// fault, if the instruction was not allowed to it), without resuming it.
func (t *Tracer) stepAccess(th *thread, in *x86.Inst, fp *kmmio.FaultPage, faultAddr uint64) (int, error) {
	t.Counts.Stepped.Add(1)
	var (
		opAddr          uint64
		size            int
		read, write, ok bool
	)
	if in != nil {
		opAddr, size, read, write, ok = in.MemOperand(&th.regs)
		ok = ok && size > 0 && size <= x86MaxAccess
	}
	if ok && !fp.Allows(write) || !ok && fp.Prot == kmmio.ProtNone {
		return int(unix.SIGSEGV), nil
	}
	tm := t.mapAt(faultAddr)
	if ok {
		if m := t.mapAt(opAddr); m != nil {
			tm = m
		}
	}
	// Ordinary memory is described from the operand; device memory, whose
	// reads may have side effects, is not read again.
	describe := ok && (tm == nil || !tm.device)
	var before [x86MaxAccess]byte
	if describe && read {
		if err := t.mem.ReadAt(before[:size], opAddr); err != nil {
			describe = false
		}
	}

	t.injTID = th.tid
	pages := []*kmmio.FaultPage{fp}
	// The page is disarmed for the step alone: the waker need not know
	// (were the tracer killed now, its restoring the page to the
	// program's protection would change nothing).
	t.quietProtect = true
	defer func() { t.quietProtect = false }()
	if err := t.engine.Disarm(fp); err != nil {
		return 0, err
	}
	var si ptrace.Siginfo
	var err error
	for tries := 0; ; tries++ {
		si, err = t.inj.Step(th.tid)
		if err != nil || si.Signo == int32(unix.SIGTRAP) {
			break
		}
		next := t.engine.Page(si.Addr)
		if tries > 4 || si.Code != ptrace.SegvAccErr || next == nil || !next.Armed {
			break
		}
		if err = t.engine.Disarm(next); err != nil {
			break
		}
		pages = append(pages, next)
	}
	for _, p := range pages {
		if rerr := t.engine.Rearm(p); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return 0, ignoreGone(err)
	}
	if si.Signo != int32(unix.SIGTRAP) {
		// The program's own fault, from the same instruction, which did not
		// execute: deliver it with the thread still at the instruction.
		return int(si.Signo), nil
	}
	if tm != nil || describe {
		if err := t.logStepped(th, tm, describe, read, write, opAddr, size, before[:size], faultAddr); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// logStepped writes the records of a single-stepped access: R and W from
// the decoded operand, the values read before and after the step, or
// UNKNOWN with the first three instruction bytes when that is not possible.
func (t *Tracer) logStepped(th *thread, tm *tmap, describe, read, write bool, addr uint64, size int, before []byte, faultAddr uint64) error {
	if !describe {
		r := trace.Record{Kind: trace.KindUnknown, TID: int32(th.tid), MapID: tm.id, Time: trace.Now(),
			Phys: tm.physOf(faultAddr), PC: t.origPC(th.regs.Rip)}
		t.process.readCode(t.mem, r.Value[:3], th.regs.Rip)
		t.Counts.Unknown.Add(1)
		tm.stats.Unknown++
		return t.emit(&r)
	}
	if read {
		t.probed(addr, before, false)
	}
	if write {
		after := t.hit.buf[:size]
		if err := t.mem.ReadAt(after, addr); err != nil {
			return err
		}
		t.probed(addr, after, true)
	}
	return t.err
}
