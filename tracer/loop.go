package tracer

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
)

// thread is one traced thread of the program.
type thread struct {
	tid int
	pid int // its thread group, the process it belongs to
	// proc is the process whose memory it runs in: its own, or for a vfork
	// child (until it executes a program or exits) its parent's.
	proc *process
	regs unix.PtraceRegs
	// held: stopped by the tracer (to single-step another thread, or to
	// detach) and not resumed yet. queued: its latest stop is in
	// Tracer.queue, still to be handled; the loop resumes it then.
	held, queued bool
	// sigs are signals that arrived while the tracer was using the thread
	// (an injected syscall, a single-step); they are delivered when it
	// resumes.
	sigs []int
	// inSys: between the entry and the exit of a syscall that changes
	// mappings, whose arguments are in sys.
	inSys bool
	sys   ptrace.SyscallInfo
	// fresh: a new thread that has not had its first stop yet, where it
	// gets the debug registers of watches.
	fresh bool
	// mask is the thread's own CPU affinity, restored at detach.
	mask    unix.CPUSet
	hasMask bool
	// jobStopped: the program is stopped by job control (SIGSTOP,
	// Ctrl-Z), as this thread's latest group-stop or interrupt report
	// said; the tracer lets the thread go without letting it run (see
	// keepStopped).
	jobStopped bool
	// parked: resumed into a system call at whose exit it stops before
	// running any code (sysmem.go), so it need not be stopped to keep it
	// off armed pages. Cleared at its next stop.
	parked bool
	// bounce and exposed are the served system call it is in, if any;
	// restartFutex the futex word of its last wait, which restart_syscall
	// reads again.
	bounce       *bounce
	exposed      *exposure
	restartFutex uint64
}

// addThread adds a thread of the current process.
func (t *Tracer) addThread(tid int) *thread {
	th := t.threads[tid]
	if th == nil {
		th = &thread{tid: tid, pid: t.pid, proc: t.process, fresh: true}
		t.threads[tid] = th
	}
	return th
}

// holdSignal keeps a signal that stopped thread tid while the tracer ran an
// injected system call in it (ptrace.Injector.Pending), to be delivered
// when the thread is resumed.
//
// A fault's SIGSEGV or SIGBUS is not kept. It was pending from the thread's
// last instruction of its own, which has not run: the injection restores
// the thread's registers, so the instruction runs again and faults again
// if it still must, and the loop then decides whose fault it is (fault).
// Kept and delivered, the tracer's own fault on an armed page (taken just
// before the thread was stopped for the injection) killed the program: 1
// run in 40 of the system-call matrix under load.
func (t *Tracer) holdSignal(tid, sig int) {
	if sig == int(unix.SIGSEGV) || sig == int(unix.SIGBUS) {
		if si, err := ptrace.GetSiginfo(tid); err == nil && si.FromKernel() {
			return
		}
	}
	t.sawSignal(sig)
	if th := t.threads[tid]; th != nil {
		th.sigs = append(th.sigs, sig)
	}
}

// loop handles stops until the program is gone, the session is cancelled,
// or an error. Every stop it takes from wait4 it also resumes before the
// next wait, except stops it queues while stopping threads, which are
// handled (and resumed) first.
func (t *Tracer) loop() error {
	killed := false
	for !t.over() || len(t.foreign) > 0 {
		if err := t.failure(); err != nil && !t.passthrough {
			return err
		}
		if t.cancel.Load() || t.force.Load() {
			if !t.spawned && !t.passthrough {
				return t.detachAll()
			}
			if !killed {
				t.Kill()
				killed = true
			}
		}
		if t.killAll.Load() {
			t.killAll.Store(false)
			for tid := range t.foreign {
				unix.Kill(tid, unix.SIGKILL)
			}
			for _, th := range t.threads { // the processes followed
				unix.Kill(th.pid, unix.SIGKILL)
			}
		}
		var s stop
		if len(t.queue) > 0 {
			s, t.queue = t.queue[0], t.queue[1:]
			if th := t.threads[s.tid]; th != nil {
				th.queued, th.held = false, false
			}
		} else {
			if t.passthrough && t.pruneGone() {
				continue
			}
			tid, ws, err := ptrace.WaitAny(false)
			if errors.Is(err, syscall.ECHILD) {
				return nil
			}
			if err != nil {
				return err
			}
			if t.wakerReport(tid, ws) {
				continue
			}
			s = stop{tid, ws}
			if now := time.Now(); now.After(t.nextDrain) {
				t.takeReady()
				t.nextDrain = now.Add(drainEvery)
			}
		}
		handle := t.handle
		if t.passthrough {
			handle = t.passOn
		}
		if err := handle(s); err != nil {
			return err
		}
	}
	return nil
}

// pruneGone forgets tracees that no longer exist, and reports whether it
// forgot any. In passthrough mode (untrace.go) the loop waits until every
// tracee is gone, and wait4 also waits for the waker, which never exits
// on its own: a tracee whose end was reported where the loop did not see it
// (a thread or child process known only from a report queued while the
// session was ending) kept a spawned session waiting for good after its
// program had exited (once in about 60 closed-pipe runs under load).
func (t *Tracer) pruneGone() bool {
	gone := false
	for tid, th := range t.threads {
		if unix.Tgkill(th.pid, tid, 0) == unix.ESRCH {
			delete(t.threads, tid)
			gone = true
		}
	}
	for tid := range t.foreign {
		if unix.Kill(tid, 0) == unix.ESRCH {
			delete(t.foreign, tid)
			delete(t.vforked, tid)
			gone = true
		}
	}
	return gone
}

// takeReady queues every other report that is ready, so that the loop
// handles the threads stopped now in turn before it waits again. wait4
// scans tracees in a fixed order (the latest attached first): taking one
// report per wait, a thread late in that order waits as long as earlier
// ones keep stopping, and an attached program's main thread was starved for
// tens of seconds by 64 busy threads. The loop calls it at most every
// drainEvery: the wait4 it costs is a system call on the hit path, and a
// thread that would starve still gets a turn every millisecond.
func (t *Tracer) takeReady() {
	for {
		tid, ws, err := ptrace.WaitAny(true)
		if err != nil || tid <= 0 {
			return
		}
		if !t.wakerReport(tid, ws) {
			t.queueStop(tid, ws)
		}
	}
}

// drainEvery bounds how often the loop takes every ready report at once.
const drainEvery = time.Millisecond

// failure returns the error that ends the session as a tracer failure: one
// passed to Abort, or the first record the log refused.
func (t *Tracer) failure() error {
	if err := t.aborted(); err != nil {
		return err
	}
	if t.outErr == nil && t.drain != nil {
		return t.drain.failed()
	}
	return t.outErr
}

// handle acts on one stop or exit of a thread.
func (t *Tracer) handle(s stop) error {
	tid, ws := s.tid, s.ws
	if t.foreign[tid] {
		return t.handleForeign(tid, ws)
	}
	if ws.Exited() || ws.Signaled() {
		return t.exited(tid, ws)
	}
	if !ws.Stopped() {
		return nil
	}
	if t.threads[tid] == nil {
		// A new tracee whose first stop came before its creator's clone,
		// fork or vfork event: a thread of the program or a child process,
		// which only that event says. It stays stopped until then.
		t.early[tid] = ws
		return nil
	}
	th := t.threads[tid]
	t.use(th.proc)
	th.parked = false
	// What the thread wrote through optimized probes comes before what
	// its stop makes us write.
	if err := t.optFlush(th.proc.pid, tid); err != nil {
		return err
	}
	sig := ws.StopSignal()
	switch ev := ptrace.Event(ws); {
	case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
		if msg, err := ptrace.GetEventMsg(tid); err == nil {
			if !t.follow() {
				t.adopt(int(msg), ev)
			} else if err := t.adoptChild(th, int(msg), ev); err != nil {
				return err
			}
		}
		err := t.resume(th, 0)
		// A vfork parent stays in the kernel until its child execs or
		// exits, and reports VFORK_DONE then: stopping it meanwhile
		// would wait for the child.
		th.parked = ev == unix.PTRACE_EVENT_VFORK
		return err
	case ev == unix.PTRACE_EVENT_EXEC:
		if err := t.execed(th); err != nil {
			return err
		}
		return t.resume(t.threads[th.pid], 0)
	case ev == unix.PTRACE_EVENT_SECCOMP:
		return t.syscallStop(th)
	case ev == unix.PTRACE_EVENT_VFORK_DONE:
		// The parent of a vfork child, blocked in vfork until the child
		// left its memory, runs again.
		return t.resume(th, 0)
	case ev == unix.PTRACE_EVENT_EXIT:
		// The thread is exiting; its memory is still there: collect the
		// perf samples that need it.
		t.perfDrainNow()
		return t.resume(th, 0)
	case ev == unix.PTRACE_EVENT_STOP:
		// An interrupt, a new thread's first stop, or a group-stop (the
		// program stopped by job control), which resume keeps stopped;
		// the signal says whether a group-stop is in effect now.
		th.jobStopped = ptrace.IsStopSignal(sig)
		if th.fresh {
			th.fresh = false
			if th.proc.forked && th.tid == th.proc.pid {
				if err := t.checkForked(th); err != nil {
					return err
				}
			}
			if err := t.newThreadWatches(th); err != nil {
				return err
			}
			if err := t.optNewThread(th); err != nil {
				return err
			}
		}
		return t.resume(th, 0) // an interrupt or a new thread's first stop
	case ev != 0:
		return t.resume(th, 0)
	case ptrace.IsSyscallStop(ws):
		return t.syscallStop(th)
	case sig == unix.SIGSEGV:
		return t.fault(th)
	case sig == unix.SIGTRAP:
		return t.trap(th)
	default:
		t.sawSignal(int(sig))
		return t.resume(th, int(sig))
	}
}

// resume restarts a stopped thread, delivering sig or else the first signal
// held back while the tracer used the thread (later ones are re-raised). A
// thread of a program stopped by job control stays stopped (keepStopped).
func (t *Tracer) resume(th *thread, sig int) error {
	if err := t.rearmBefore(th); err != nil {
		return err
	}
	if sig == 0 && len(th.sigs) > 0 {
		sig, th.sigs = th.sigs[0], th.sigs[1:]
	}
	for _, s := range th.sigs {
		unix.Tgkill(th.pid, th.tid, syscall.Signal(s))
	}
	th.sigs = th.sigs[:0]
	if sig != 0 {
		// The program's signal: delivered outside the detours' code.
		if err := t.optSignal(th); err != nil {
			return err
		}
	}
	th.held = false
	if th.jobStopped {
		return t.keepStopped(th, sig)
	}
	return t.restart(th, sig)
}

// ignoreGone drops the error of a request on a thread that has just died
// (killed, or its process exiting): its exit is reported by wait4 next.
func ignoreGone(err error) error {
	if errors.Is(err, syscall.ESRCH) || errors.Is(err, ptrace.ErrGone) {
		return nil
	}
	return err
}

// exited forgets a thread that is gone. A process is gone with its
// thread-group leader, which the kernel reports after every other thread;
// the program's leader's status is the program's.
func (t *Tracer) exited(tid int, ws unix.WaitStatus) error {
	th, ok := t.threads[tid]
	if !ok {
		return nil // a thread that exec discarded, reported late
	}
	t.use(th.proc)
	delete(t.threads, tid)
	t.perfThreadGone(tid)
	t.optForget(tid)
	if tid != th.pid {
		return nil
	}
	if tid == t.root.pid {
		if ws.Signaled() {
			t.result.ExitCode = 128 + int(ws.Signal())
			t.result.Signal = ws.Signal()
		} else {
			t.result.ExitCode = ws.ExitStatus()
		}
	}
	t.uncountProcess(tid)
	if th.proc.pid != tid {
		return nil // a vfork child: its parent's memory lives on
	}
	return t.processGone(th.proc)
}

// execed starts over after a process executed a new image: its old
// mappings are gone (each traced one gets an UNMAP), the thread that called
// exec now has the leader's id, and every other thread is gone. A vfork
// child leaves its parent's memory for a process of its own.
func (t *Tracer) execed(th *thread) error {
	pid := th.pid
	for tid, o := range t.threads {
		if o.pid == pid && tid != pid && tid != th.tid {
			delete(t.threads, tid)
		}
	}
	delete(t.threads, th.tid)
	p := th.proc
	if p.pid != pid {
		// Its identity block in the parent's optimized probes is free.
		t.optForget(th.tid)
		p = t.newProcess(pid)
		p.parent, p.leaderMask = th.proc.pid, th.proc.leaderMask
		// Its filters are its parent's, inherited at vfork.
		p.filters, p.filterInsns, p.syscallStops = th.proc.filters, th.proc.filterInsns, th.proc.syscallStops
		t.procs[pid] = p
	}
	t.use(p)
	p.scratch = nil // gone with the old memory
	leader := t.newThread(pid, pid, p)
	leader.inSys, leader.bounce, leader.exposed, leader.restartFutex = false, nil, nil, 0
	var pc uint64
	if err := ptrace.GetRegs(pid, &leader.regs); err == nil {
		pc = leader.regs.Rip
	}
	if err := t.optImageGone(); err != nil {
		return err
	}
	if err := t.dropAllMaps(pc, pid); err != nil {
		return err
	}
	if err := t.dropWatches(pc, pid); err != nil {
		return err
	}
	return t.openImage(leader)
}

// forgetImage is execed for a session that is ending: th, stopped at its
// exec event, becomes the leader, and the old image's mappings and watches
// are dropped; the new image is not looked at.
func (t *Tracer) forgetImage(th *thread) error {
	for tid, o := range t.threads {
		if o.pid == t.pid && tid != t.pid && tid != th.tid {
			delete(t.threads, tid)
		}
	}
	if th.tid != t.pid {
		delete(t.threads, th.tid)
		th.tid = t.pid
		t.threads[t.pid] = th
	}
	th.inSys = false
	if err := t.dropAllMaps(0, t.pid); err != nil {
		return err
	}
	return t.dropWatches(0, t.pid)
}

// openImage prepares for the program's current image: memory access, the
// syscall instruction to inject through, and its mappings to trace.
func (t *Tracer) openImage(th *thread) error {
	if t.mem != nil {
		t.mem.Close()
	}
	var err error
	if t.mem, err = ptrace.OpenMem(t.pid); err != nil {
		return err
	}
	if t.inj.SyscallAddr, err = ptrace.FindSyscallInsn(t.pid, t.mem); err != nil {
		return err
	}
	clear(t.icache)
	t.injTID = th.tid
	t.exe = exePath(t.pid)
	t.brk = heapEnd(t.pid)
	if err := t.emitProc(t.pid, t.parent, t.exe); err != nil {
		return err
	}
	// Where the code is comes first, so that a reader knows the program
	// before its first access.
	if err := t.logCode(0, ^uint64(0)); err != nil {
		return err
	}
	// Mappings that exist already have no mapping call to point at: pc 0.
	if err := t.syncMaps(0, ^uint64(0), 0, th.tid); err != nil {
		return err
	}
	if err := t.placeWatches(th); err != nil {
		return err
	}
	return t.coverArmed()
}

// handleForeign serves a process the program forked. It is not traced, but
// it was born with the parent's armed pages (PROT_NONE), which are restored
// at its first stop, and in spawn mode with the seccomp filter, whose stops
// it needs a tracer to pass; so spawned programs' children stay attached and
// are just kept running.
func (t *Tracer) handleForeign(tid int, ws unix.WaitStatus) error {
	if ws.Exited() || ws.Signaled() {
		delete(t.foreign, tid)
		delete(t.vforked, tid)
		return nil
	}
	if !ws.Stopped() {
		return nil
	}
	sig := 0
	switch ev := ptrace.Event(ws); {
	case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
		if msg, err := ptrace.GetEventMsg(tid); err == nil {
			t.adopt(int(msg), -1) // a child of a child: nothing to restore
		}
	case ev == unix.PTRACE_EVENT_EXEC && t.vforked[tid]:
		// A vfork child no longer shares the program's memory.
		delete(t.vforked, tid)
		if !t.spawned {
			delete(t.foreign, tid)
			return ignoreGone(ptrace.Detach(tid, 0))
		}
	case ev == unix.PTRACE_EVENT_STOP:
		if t.vforked[tid] {
			// It runs the program's detours until it execs: an identity
			// of its own.
			if err := t.optIdentify(tid); err != nil {
				return err
			}
		}
		if i := indexOf(t.forked, tid); i >= 0 {
			t.forked = append(t.forked[:i], t.forked[i+1:]...)
			if err := t.restoreForked(tid); err != nil {
				return err
			}
		}
		if !t.spawned && !t.vforked[tid] {
			delete(t.foreign, tid)
			return ignoreGone(ptrace.Detach(tid, 0))
		}
		if ptrace.IsStopSignal(ws.StopSignal()) {
			// Stopped by job control: it stays stopped (see keepStopped).
			return t.keepStopped(&thread{tid: tid}, 0)
		}
	case ev != 0 || ptrace.IsSyscallStop(ws):
	case ws.StopSignal() == unix.SIGSEGV && t.vforked[tid]:
		// A vfork child runs in the program's memory until it execs or
		// exits: its accesses to armed pages are hits like any thread's,
		// and so are its int3s.
		t.use(t.root)
		if err := t.optFlush(t.root.pid, tid); err != nil {
			return err
		}
		return t.fault(&thread{tid: tid, pid: tid, proc: t.root})
	case ws.StopSignal() == unix.SIGTRAP && t.vforked[tid]:
		t.use(t.root)
		if err := t.optFlush(t.root.pid, tid); err != nil {
			return err
		}
		return t.trap(&thread{tid: tid, pid: tid, proc: t.root})
	default:
		sig = int(ws.StopSignal())
	}
	return ignoreGone(ptrace.Cont(tid, sig))
}

// adopt records a new tracee announced by a clone, fork or vfork event (ev;
// -1 for a child of a child): a thread of the program for clone, an
// untraced child process otherwise. A fork child has the parent's armed
// pages to restore; a vfork child shares the parent's memory, so its hits
// are handled until it execs or exits. If the tracee's first stop came
// already, it is handled now.
func (t *Tracer) adopt(tid, ev int) {
	switch ev {
	case unix.PTRACE_EVENT_CLONE:
		t.addThread(tid)
	case unix.PTRACE_EVENT_FORK:
		t.foreign[tid] = true
		t.forked = append(t.forked, tid)
		if in := t.optSnapshot(); in != nil {
			if t.forkedOpt == nil {
				t.forkedOpt = map[int]*optInherited{}
			}
			t.forkedOpt[tid] = in
		}
	case unix.PTRACE_EVENT_VFORK:
		t.foreign[tid] = true
		t.vforked[tid] = true
	default:
		t.foreign[tid] = true
	}
	t.takeEarly(tid)
}

// restoreForked gives a forked child back the code under the parent's
// int3s, and the protections its parent's armed pages had (traced
// mappings' and page-protection watches'), by injecting mprotect into the
// child.
func (t *Tracer) restoreForked(tid int) error {
	if err := t.restoreBreakpointsIn(tid); err != nil {
		return err
	}
	in := t.forkedOpt[tid]
	delete(t.forkedOpt, tid)
	if err := t.optRestoreChild(tid, in, t.inj.SyscallAddr); err != nil {
		return err
	}
	if t.engine == nil {
		return nil
	}
	inj := ptrace.Injector{SyscallAddr: t.inj.SyscallAddr}
	return t.engine.ArmedRuns(func(addr, length uint64, prot int) error {
		if r, err := inj.Syscall(tid, unix.SYS_MPROTECT, addr, length, uint64(prot)); err != nil {
			return ignoreGone(err)
		} else if r < 0 {
			return fmt.Errorf("restore pages %#x+%#x in forked child %d: %w", addr, length, tid, syscall.Errno(-r))
		}
		return nil
	})
}

func indexOf(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
