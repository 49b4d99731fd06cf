package tracer

import (
	"errors"
	"sync"
	"sync/atomic"

	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/hwbp"
	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/trace"
)

// The perf backend of watch (BackendPerf) serves debug-register watches
// with perf_event_open breakpoints instead of ptrace's debug registers: the
// kernel appends a sample (IP, registers, time) to a ring at each hit and the
// thread does not stop, so a hit costs about the debug trap alone. A reader
// goroutine drains the rings. The value comes from the registers in the
// sample where the instruction allows it: the source of a register or
// immediate store, the destination of a load (mov, movzx, movsx). For any
// other instruction (a read-modify-write, say) it is read from memory when
// the sample is drained, which may be later than the hit: those values are
// not exact, which is why ptrace is the default backend. The tracer keeps
// ptrace for the rest of its work (threads, exec, page-protection watches).

// perfSet is the perf backend's state.
type perfSet struct {
	t    *Tracer
	proc *process   // whose threads it watches; t.process changes under it
	mu   sync.Mutex // guards entries and dead
	// drainMu serializes draining (the reader's, and the tracer's at a
	// thread's exit stop): a PerfWatch is not safe for concurrent use.
	drainMu sync.Mutex
	entries map[int][]*perfEntry
	dead    []*perfEntry
	mem     *ptrace.Mem // the reader's own, for code bytes and fallback values
	cache   map[uint64]*x86.Inst
	lost    atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	err     error
}

// perfEntry is one breakpoint on one thread.
type perfEntry struct {
	w      *hwbp.PerfWatch
	st     *watchState
	req    hwbp.Request
	fsBase uint64
	gsBase uint64
}

func (t *Tracer) startPerf() error {
	mem, err := ptrace.OpenMem(t.pid)
	if err != nil {
		return err
	}
	ps := &perfSet{t: t, proc: t.process, entries: map[int][]*perfEntry{}, mem: mem, cache: map[uint64]*x86.Inst{},
		stop: make(chan struct{}), done: make(chan struct{})}
	t.perf = ps
	go ps.run()
	return nil
}

// perfOpenThread opens the breakpoints of every hardware watch in thread th
// (stopped: its FS and GS bases are read for FS-relative operands).
func (t *Tracer) perfOpenThread(th *thread) error {
	ps := t.perf
	var regs unix.PtraceRegs
	if err := ptrace.GetRegs(th.tid, &regs); err != nil {
		return ignoreGone(err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	have := map[uint64]bool{}
	for _, e := range ps.entries[th.tid] {
		have[e.req.Cookie] = true
	}
	for i := 0; i < hwbp.NumSlots; i++ {
		req, ok := t.watch.slots.Slot(i)
		if !ok || have[req.Cookie] {
			continue
		}
		st := t.watchByID(uint32(req.Cookie >> 8))
		if st == nil {
			continue
		}
		w, err := hwbp.OpenPerfWith(th.tid, req.Addr, req.Len, req.Kind, hwbp.PerfOptions{RingPages: 512, WakeupEvents: 512})
		if err != nil {
			if errors.Is(err, unix.ESRCH) {
				return nil
			}
			return err
		}
		ps.entries[th.tid] = append(ps.entries[th.tid], &perfEntry{w: w, st: st, req: req, fsBase: regs.Fs_base, gsBase: regs.Gs_base})
	}
	return nil
}

// perfDrainNow drains every ring at once, from the tracer loop, while a
// thread is stopped at its exit: the process's memory, which decoding and
// fallback values read, still exists then, and may not a moment later.
func (t *Tracer) perfDrainNow() {
	ps := t.perf
	if ps == nil {
		return
	}
	ps.drainMu.Lock()
	defer ps.drainMu.Unlock()
	ps.mu.Lock()
	var all []*perfEntry
	for _, es := range ps.entries {
		all = append(all, es...)
	}
	all = append(all, ps.dead...)
	ps.mu.Unlock()
	for _, e := range all {
		ps.drain(e)
	}
}

// perfThreadGone hands a dead thread's breakpoints to the reader, which
// drains and closes them.
func (t *Tracer) perfThreadGone(tid int) {
	if t.perf == nil {
		return
	}
	ps := t.perf
	ps.mu.Lock()
	ps.dead = append(ps.dead, ps.entries[tid]...)
	delete(ps.entries, tid)
	ps.mu.Unlock()
}

// stopPerf drains every ring, closes every breakpoint and ends the reader.
// After it, no perf event of ours is left in the program.
func (t *Tracer) stopPerf() error {
	ps := t.perf
	if ps == nil {
		return nil
	}
	close(ps.stop)
	<-ps.done
	t.perf = nil
	ps.mem.Close()
	t.perfLost.Add(ps.lost.Load())
	return ps.err
}

func (ps *perfSet) run() {
	defer close(ps.done)
	var fds []unix.PollFd
	for {
		ps.mu.Lock()
		var all []*perfEntry
		for _, es := range ps.entries {
			all = append(all, es...)
		}
		dead := ps.dead
		ps.dead = nil
		ps.mu.Unlock()
		ps.drainMu.Lock()
		for _, e := range append(all, dead...) {
			ps.drain(e)
		}
		for _, e := range dead {
			ps.close(e)
		}
		ps.drainMu.Unlock()
		select {
		case <-ps.stop:
			ps.drainMu.Lock()
			defer ps.drainMu.Unlock()
			ps.mu.Lock()
			for _, es := range ps.entries {
				for _, e := range es {
					ps.drain(e)
					ps.close(e)
				}
			}
			ps.entries = map[int][]*perfEntry{}
			ps.mu.Unlock()
			return
		default:
		}
		fds = fds[:0]
		for _, e := range all {
			fds = append(fds, unix.PollFd{Fd: int32(e.w.Fd()), Events: unix.POLLIN})
		}
		// The kernel wakes the poll every 512 samples (a wake-up per hit
		// would cost more than the hit); wake at least every 5 ms anyway,
		// for the rest, new threads, dead ones and stop. The 2 MiB rings
		// hold about 10000 samples each.
		unix.Poll(fds, 5)
	}
}

func (ps *perfSet) drain(e *perfEntry) {
	_, err := e.w.Read(func(s hwbp.Sample) { ps.sample(e, &s) })
	if err != nil && ps.err == nil {
		ps.err = err
	}
}

// close closes a drained breakpoint, counting the samples it lost.
func (ps *perfSet) close(e *perfEntry) {
	ps.lost.Add(e.w.Lost())
	e.w.Close()
}

// sample turns one perf sample into a record.
func (ps *perfSet) sample(e *perfEntry, s *hwbp.Sample) {
	st, t := e.st, ps.t
	if e.req.Kind == hwbp.Exec {
		atomic.AddUint64(&st.stats.Execs, 1)
		t.Counts.Reads.Add(1)
		ps.emit(&trace.Record{Kind: trace.KindExec, Time: s.Time, MapID: st.id, Phys: s.IP, PC: s.IP, TID: int32(s.TID)})
		return
	}
	regs := ptraceRegs(&s.Regs, e.fsBase, e.gsBase)
	pc, in := ps.accessAt(s.IP, e.req, &regs)
	r := trace.Record{Kind: trace.KindWrite, Time: s.Time, MapID: st.id, TID: int32(s.TID), PC: pc,
		Phys: e.req.Addr, Width: uint8(e.req.Len)}
	write, exact := true, false
	if in != nil {
		at := regs
		at.Rip = pc
		a, n, rd, wr, _ := in.MemOperand(&at)
		r.Phys, r.Width, write = a, uint8(n), wr
		if st.Mode.ReadOnly {
			if wr && !rd {
				return
			}
			write = false
		}
		if v, ok := valueFromRegs(in, &regs); ok {
			r.SetValue(v, n)
			exact = true
		}
	}
	if !exact && ps.mem.ReadAt(r.Value[:r.Width], r.Phys) != nil {
		return // the thread's process is gone
	}
	if write {
		atomic.AddUint64(&st.stats.Writes, 1)
		t.Counts.Writes.Add(1)
	} else {
		r.Kind = trace.KindRead
		atomic.AddUint64(&st.stats.Reads, 1)
		t.Counts.Reads.Add(1)
	}
	ps.emit(&r)
}

func (ps *perfSet) emit(r *trace.Record) {
	if r.Kind.IsAccess() {
		r.Kind = trace.AccessKind(r.Kind.IsWrite(), int(r.Width))
	}
	if err := ps.t.cfg.Out.Append(r); err != nil && ps.err == nil {
		ps.err = err
	}
}

// accessAt finds the instruction that ends at ip and touches the piece
// (accessorBefore), cached by ip.
func (ps *perfSet) accessAt(ip uint64, req hwbp.Request, regs *unix.PtraceRegs) (uint64, *x86.Inst) {
	if in, ok := ps.cache[ip]; ok {
		return ip - uint64(in.Len), in
	}
	var code [15]byte
	if ps.proc.readCode(ps.mem, code[:], ip-15) < 15 {
		return ip, nil
	}
	pc, in := accessorBefore(code[:], ip, regs, req.Addr, uint64(req.Len))
	if in != nil {
		ps.cache[ip] = in
	}
	return pc, in
}

// ptraceRegs lays out a sample's registers as ptrace's, for MemOperand.
func ptraceRegs(u *hwbp.UserRegs, fs, gs uint64) unix.PtraceRegs {
	return unix.PtraceRegs{Rax: u.AX, Rbx: u.BX, Rcx: u.CX, Rdx: u.DX, Rsi: u.SI, Rdi: u.DI, Rbp: u.BP,
		Rsp: u.SP, Rip: u.IP, Eflags: u.Flags, R8: u.R8, R9: u.R9, R10: u.R10, R11: u.R11, R12: u.R12,
		R13: u.R13, R14: u.R14, R15: u.R15, Fs_base: fs, Gs_base: gs}
}

// valueFromRegs returns the value an instruction stored or loaded, from the
// registers after it, when they hold it: the source of a register or
// immediate mov store, the destination of a mov, movzx or movsx load (whose
// low bytes are the bytes loaded).
func valueFromRegs(in *x86.Inst, r *unix.PtraceRegs) (uint64, bool) {
	a := in.Op.Args
	switch in.Op.Op {
	case x86asm.MOV:
		if _, ok := a[0].(x86asm.Mem); ok {
			switch src := a[1].(type) {
			case x86asm.Reg:
				return x86.RegValue(r, src)
			case x86asm.Imm:
				return uint64(src), true
			}
			return 0, false
		}
		fallthrough
	case x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD:
		if dst, ok := a[0].(x86asm.Reg); ok {
			if _, ok := a[1].(x86asm.Mem); ok {
				return x86.RegValue(r, dst)
			}
		}
	}
	return 0, false
}
