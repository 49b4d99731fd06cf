package tracer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/sysfilter"
)

// RunHelper runs the helper process mmiotrace re-executes itself as (the
// waker), when args (os.Args) ask for one. main must call it first, and
// exit with the code it returns when handled.
func RunHelper(args []string) (code int, handled bool) {
	if len(args) < 2 || args[1] != WakerArg {
		return 0, false
	}
	return runWaker(), true
}

// spawn starts the command under the seccomp shim and prepares its image.
func (t *Tracer) spawn() error {
	s, err := ptrace.Spawn(t.cfg.Argv, t.cfg.Stdio, t.cfg.Env, sysfilter.Base(sysfilter.BaseOptions{Brk: len(t.cfg.Select.Ranges) > 0}))
	if err != nil {
		return err
	}
	t.pid, t.proc, t.spawned = s.PID, s.Proc, true
	t.parent = os.Getpid()
	t.procs[t.pid] = t.process
	t.countProcess(t.pid)
	t.pidSeen.Store(int64(t.pid))
	th := t.addThread(t.pid)
	t.pinThread(th) // threads it creates inherit the affinity
	if err := ptrace.GetRegs(t.pid, &th.regs); err != nil {
		t.Kill()
		return err
	}
	if err := t.openImage(th); err != nil {
		t.Kill()
		return err
	}
	return t.resume(th, 0)
}

// ErrPermission is returned, wrapped with the reason as far as it can be
// told, when the tracer may not trace the process.
var ErrPermission = errors.New("not permitted to trace it")

// permissionError explains an EPERM from PTRACE_SEIZE on pid: what the
// kernel's rules say given this host's settings and mmiotrace's
// privileges, and what to do.
func permissionError(pid int) error {
	scope := -1 // Yama absent
	if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil {
		scope, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	var hint string
	switch {
	case scope == 3:
		hint = "kernel.yama.ptrace_scope is 3, which forbids all tracing until the next boot"
	case !hasCapSysPtrace() && scope == 2:
		hint = "kernel.yama.ptrace_scope is 2: run as root or with CAP_SYS_PTRACE"
	case !hasCapSysPtrace():
		hint = "run as root or with CAP_SYS_PTRACE, or set kernel.yama.ptrace_scope=0 (sysctl)"
	default:
		// Root, and still refused: neither running as root nor Yama is
		// the cause.
		hint = "the kernel refuses it even with CAP_SYS_PTRACE: the process may run in another user namespace or with capabilities mmiotrace lacks (the system's init, a container's), or a security module may protect it"
	}
	return fmt.Errorf("attach to process %d: %w: %s", pid, ErrPermission, hint)
}

// hasCapSysPtrace reports whether mmiotrace has CAP_SYS_PTRACE in its
// effective set.
func hasCapSysPtrace() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return caps&(1<<unix.CAP_SYS_PTRACE) != 0
		}
	}
	return false
}

// attach seizes every thread of a running process, stops them, arms its
// mappings and lets it go on.
func (t *Tracer) attach() error {
	pid := t.cfg.PID
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("process %d does not exist", pid)
	}
	if tracer := tracerOf(pid); tracer != 0 {
		return fmt.Errorf("process %d is already traced by process %d (a debugger?); detach it first", pid, tracer)
	}
	t.pid, t.parent = pid, parentOf(pid)
	t.procs[pid] = t.process
	t.countProcess(pid)
	// Seize until no new thread appears: threads created by a thread
	// seized already are attached by the kernel (TRACECLONE).
	for {
		tids, err := tasks(pid)
		if err != nil {
			return err
		}
		fresh := 0
		for _, tid := range tids {
			if t.threads[tid] != nil {
				continue
			}
			if err := ptrace.Seize(tid, ptrace.OptionsAttach); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					continue
				}
				t.releaseAll()
				if errors.Is(err, syscall.EPERM) {
					return permissionError(pid)
				}
				return fmt.Errorf("attach to process %d: %w", pid, err)
			}
			t.addThread(tid)
			fresh++
		}
		if fresh == 0 {
			break
		}
	}
	if err := t.stopOthers(nil); err != nil {
		t.releaseAll()
		return err
	}
	th := t.anyHeld()
	if th == nil {
		return fmt.Errorf("process %d exited while attaching", pid)
	}
	if t.pinned {
		unix.SchedGetaffinity(pid, &t.leaderMask)
		t.waker.send(fmt.Sprintf(wakerProc, pid, formatMask(&t.leaderMask)))
		for _, o := range t.threads {
			t.pinThread(o)
		}
	}
	if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
		t.releaseAll()
		return err
	}
	if err := t.openImage(th); err != nil {
		t.abandon()
		return err
	}
	return t.resumeOthers()
}

// tracerOf returns the TracerPid of a process, 0 if none or unknown.
func tracerOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func tasks(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// releaseAll detaches from threads seized before anything was armed, each
// with the signal it stopped for, if any.
func (t *Tracer) releaseAll() {
	sigs := map[int]int{}
	for _, s := range t.queue {
		if s.ws.Stopped() && ptrace.Event(s.ws) == 0 && !ptrace.IsSyscallStop(s.ws) {
			sigs[s.tid] = int(s.ws.StopSignal())
		}
	}
	t.queue = nil
	for tid := range t.threads {
		ptrace.Detach(tid, sigs[tid])
	}
	t.threads = map[int]*thread{}
}

// anyHeld returns a held thread running in the current process's memory.
func (t *Tracer) anyHeld() *thread {
	if th := t.threads[t.pid]; th != nil && th.held && th.proc == t.process {
		return th
	}
	for _, th := range t.threads {
		if th.held && th.proc == t.process {
			return th
		}
	}
	return nil
}

// stopOthers stops every running thread that runs in the memory of except
// but except itself and parked threads (except nil: every thread of every
// process), with
// PTRACE_INTERRUPT, and waits until each is stopped (see collect). A
// thread may report a different stop first (a signal, a fault, a syscall);
// that stop is queued for the loop, and the thread, which is stopped,
// counts as held. So is a new thread's first stop, which the loop has
// work to do at. A group-stop (the program stopped by SIGSTOP or Ctrl-Z)
// serves as the interrupt's stop: the thread is held, and remembered as
// stopped by job control, to be kept stopped when the tracer lets it go.
// (The kernel clears a pending interrupt at any stop; one that comes on top
// of a stop already reported gives one more stop later, which the loop
// resumes.)
//
// After Force it returns errForced, with the threads that did not stop in
// time still running.
func (t *Tracer) stopOthers(except *thread) error {
	waiting := map[int]*thread{}
	for _, o := range t.threads {
		if o == except || o.held || o.queued || except != nil && (o.proc != except.proc || o.parked) {
			continue
		}
		if err := ptrace.Interrupt(o.tid); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				continue // exiting: its end is reported to the loop
			}
			return err
		}
		waiting[o.tid] = o
	}
	got, err := t.collect(waiting)
	for tid, ws := range got {
		o := waiting[tid]
		switch {
		case !ws.Stopped():
			t.queueStop(tid, ws)
		case ptrace.Event(ws) == unix.PTRACE_EVENT_STOP && !o.fresh:
			o.held = true
			o.jobStopped = ptrace.IsStopSignal(ws.StopSignal())
			// Not from a group-stop: continuing the thread would end
			// it, and a program stopped by job control must stay so.
			if err == nil && !o.jobStopped && ownSignalPending(o.pid, tid) {
				err = t.takePendingStop(o)
			}
		default:
			t.queueStop(tid, ws)
		}
	}
	return err
}

// takePendingStop turns the SIGSEGV or SIGTRAP that thread o, held at its
// interrupt stop, still has pending into a queued stop. A thread that hit
// one of our int3s (a guard, a detour's slow path) or faulted on an armed
// page just before the interrupt reports the interrupt first; left
// pending, the signal would be reported once the thread runs again, after
// the caller may have moved it (out of a detour, or into a new one, at a
// patch or an unpatch), and would be taken for the program's own signal
// at the new place: eight threads hammering a locked xadd in detours lost
// the program to such a SIGTRAP now and then. Queued, the stop is seen by
// dropStaleStop when the thread moves, and handled by the loop otherwise.
// The thread runs no instruction of its own in between: a pending signal
// is taken on the way back to user space.
func (t *Tracer) takePendingStop(o *thread) error {
	if err := ptrace.Cont(o.tid, 0); err != nil {
		return ignoreGone(err)
	}
	o.held = false
	got, err := t.collect(map[int]*thread{o.tid: o})
	if ws, ok := got[o.tid]; ok {
		if ptrace.Event(ws) == unix.PTRACE_EVENT_STOP && ws.Stopped() {
			o.held = true // a new interrupt or group-stop, nothing to handle
			o.jobStopped = ptrace.IsStopSignal(ws.StopSignal())
		} else {
			t.queueStop(o.tid, ws)
		}
	}
	return err
}

// resumeOthers resumes the threads stopOthers held, except those whose
// queued stop the loop has still to handle.
func (t *Tracer) resumeOthers() error {
	for _, o := range t.threads {
		if o.held && !o.queued {
			if err := t.resume(o, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// detachAll ends tracing of a live attached program: it stops every thread,
// restores every armed page, and detaches each thread with the signal it
// was to receive, except the tracer's own faults on armed pages, which the
// thread simply re-executes once the page is restored. A thread held in a
// group-stop stays stopped: the kernel puts it back into the group-stop at
// detach. After Force, threads that did not stop in time stay attached
// (the kernel releases them when mmiotrace exits); the pages are restored
// through a thread that did stop, if any.
func (t *Tracer) detachAll() error {
	sigs, first := t.quiesce()
	for tid, th := range t.threads {
		if !th.held {
			continue
		}
		sig := sigs[tid]
		if sig == 0 && len(th.sigs) > 0 {
			sig = th.sigs[0]
		}
		if err := ptrace.Detach(tid, sig); err != nil && !errors.Is(err, syscall.ESRCH) && first == nil {
			first = err
		}
	}
	// Child processes (fork children before their first stop, vfork
	// children until they exec) and tracees not yet announced: stopped
	// ones are detached with the signal they stopped for; running ones
	// are stopped first.
	sigOf := map[int]int{}
	for _, s := range t.queue {
		if s.ws.Stopped() {
			sigOf[s.tid] = 0
			if ptrace.Event(s.ws) == 0 && !ptrace.IsSyscallStop(s.ws) {
				sigOf[s.tid] = int(s.ws.StopSignal())
			}
		}
	}
	t.queue = nil
	for tid := range t.early {
		sigOf[tid] = 0
	}
	waiting := map[int]*thread{}
	for tid := range t.foreign {
		if _, stopped := sigOf[tid]; !stopped && ptrace.Interrupt(tid) == nil {
			waiting[tid] = &thread{tid: tid}
		}
	}
	got, _ := t.collect(waiting)
	for tid, ws := range got {
		if ws.Stopped() {
			sigOf[tid] = 0
		}
	}
	for tid, sig := range sigOf {
		if t.threads[tid] == nil {
			ptrace.Detach(tid, sig)
		}
	}
	t.threads = map[int]*thread{}
	t.foreign = map[int]bool{}
	t.early = map[int]unix.WaitStatus{}
	t.result = Result{ExitCode: -1, Detached: true}
	return first
}

// quiesce stops every thread of the program and takes away everything the
// tracer put in it: armed pages, watches, the pinning to the tracer's CPU.
// It returns the signal each held thread is to receive when it goes on
// (none for the tracer's own faults on armed pages, which the thread
// re-executes), and the first error. Threads that would not stop (after
// Force) are unpinned but otherwise left as they are.
func (t *Tracer) quiesce() (map[int]int, error) {
	t.use(t.root)
	sigs := map[int]int{}
	taken := map[int]bool{} // stopped at a signal's delivery
	var first error
	// Stop every thread, and take over the stops queued for the loop:
	// new threads announced there are stopped in turn, until Force: then
	// each round would wait forceGrace for the threads that cannot stop,
	// so the threads announced after it are left as they are.
	for again := true; again; {
		again = false
		if err := t.stopOthers(nil); err != nil && first == nil {
			first = err
		}
		forced := errors.Is(first, errForced)
		pending := t.queue
		t.queue = nil
		var rest []stop
		for _, s := range pending {
			th := t.threads[s.tid]
			if th == nil || !s.ws.Stopped() {
				rest = append(rest, s)
				continue
			}
			th.queued, th.held = false, true
			t.use(th.proc)
			// A thread in a bounced call stopped at its exit (done, or
			// interrupted): what the call wrote goes to the program's
			// memory and its arguments back to the program's, which a
			// restarted call then uses.
			if th.bounce != nil && ptrace.IsSyscallStop(s.ws) {
				if info, err := ptrace.GetSyscallInfo(s.tid); err == nil && info.Op == ptrace.SyscallExit {
					if err := t.finishBounce(th, info.Ret()); err != nil && first == nil {
						first = err
					}
				}
			}
			th.exposed = nil
			switch ev := ptrace.Event(s.ws); {
			case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
				if msg, err := ptrace.GetEventMsg(s.tid); err == nil {
					if !t.follow() {
						t.adopt(int(msg), ev)
						again = again || ev == unix.PTRACE_EVENT_CLONE && !forced
					} else if err := t.adoptChild(th, int(msg), ev); err != nil {
						if first == nil {
							first = err
						}
					} else {
						again = !forced // a thread, or a process with pages to restore
					}
				}
			case ev == unix.PTRACE_EVENT_EXEC:
				// The old image is gone with everything armed in it,
				// and nothing is armed in the new one yet.
				if th.proc.pid != th.pid {
					// A vfork child left its parent's memory.
					p := t.newProcess(th.pid)
					t.procs[th.pid] = p
					th.proc = p
				} else if err := t.forgetImage(th); err != nil && first == nil {
					first = err
				}
			case ev == unix.PTRACE_EVENT_STOP:
				th.jobStopped = ptrace.IsStopSignal(s.ws.StopSignal())
			case ev == 0 && !ptrace.IsSyscallStop(s.ws):
				// A signal-delivery stop: the signal is taken, and is
				// the one to deliver. (Other stops, a group-stop that
				// came right after a fault among them, leave a SIGSEGV
				// pending, which the check below takes.)
				taken[s.tid] = true
				if sig := int(s.ws.StopSignal()); !t.ownSignal(s.tid, sig) {
					sigs[s.tid] = sig
				}
			}
		}
		// A stop kept for a thread unknown when it came (a new thread's
		// first stop, taken by collect before its creator's clone event,
		// which this round may have handled): if the thread is known now,
		// it is stopped with its report taken, so it is queued and held,
		// or the next round would interrupt it and wait forever.
		for _, s := range rest {
			if th := t.threads[s.tid]; th != nil {
				th.queued = true
				th.held = th.held || s.ws.Stopped()
			}
		}
		t.queue = append(rest, t.queue...)
	}
	// A thread that faulted on an armed page, or hit one of our int3s,
	// just before its interrupt stop (or its group-stop) still has the
	// SIGSEGV or SIGTRAP pending: the kernel reports those stops first.
	// Detached, it would die of it: take the signal now.
	for tid, th := range t.threads {
		if th.held && !taken[tid] && ownSignalPending(th.pid, tid) {
			t.use(th.proc)
			if sig := t.takeSignal(th); sig != 0 {
				sigs[tid] = sig
			}
		}
	}
	if errors.Is(first, errForced) {
		t.warn(fmt.Sprintf("forced: threads of process %d that did not stop stay attached until mmiotrace exits", t.root.pid))
		first = nil
	}
	t.use(t.root)
	if err := t.restoreAllForked(); err != nil && first == nil {
		first = err
	}
	for _, p := range t.procs {
		t.use(p)
		p.exposer = nil
		// Optimized probes out first: their detours use the aliases and
		// the armed pages' protection.
		if err := t.optDetach(); err != nil && first == nil {
			first = err
		}
		if th := t.anyHeld(); th != nil && t.engine != nil {
			t.injTID = th.tid
			if err := t.engine.DisarmAll(); err != nil && first == nil {
				first = err
			}
			if err := t.unmapScratch(); err != nil && first == nil {
				first = err
			}
		} else if t.engine != nil && t.engine.Pages() > 0 && first == nil {
			first = fmt.Errorf("no thread of process %d stopped: its traced pages could not be restored", t.pid)
		}
		if err := t.clearWatches(); err != nil && first == nil {
			first = err
		}
	}
	for _, th := range t.threads {
		t.unpinThread(th)
	}
	return sigs, first
}

// ownSignalPending reports whether SIGSEGV or SIGTRAP is pending for
// thread tid (faults and int3 traps are signalled to the thread alone) and
// not blocked: the kernel unblocks the signal of a fault or trap, so a
// blocked one came from kill and is the program's to keep.
func ownSignalPending(pid, tid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return false
	}
	var pnd, blk uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigPnd:"); ok {
			pnd, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		} else if v, ok := strings.CutPrefix(line, "SigBlk:"); ok {
			blk, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	const own = 1<<(unix.SIGSEGV-1) | 1<<(unix.SIGTRAP-1)
	return pnd&^blk&own != 0
}

// takeSignal resumes thread th, held at an interrupt stop with a signal
// pending, to its signal-delivery stop, which comes before it runs any
// code, and holds it there. It returns the signal to deliver when the
// thread goes on: none for the tracer's own (see ownSignal).
func (t *Tracer) takeSignal(th *thread) int {
	if err := ptrace.Cont(th.tid, 0); err != nil {
		return 0
	}
	th.held = false
	got, _ := t.collect(map[int]*thread{th.tid: th})
	ws, ok := got[th.tid]
	switch {
	case !ok:
		return 0 // forced before it stopped: it runs on
	case !ws.Stopped():
		t.queueStop(th.tid, ws) // gone: the loop forgets it
		return 0
	}
	th.held = true
	switch ev := ptrace.Event(ws); {
	case ev == unix.PTRACE_EVENT_STOP:
		th.jobStopped = ptrace.IsStopSignal(ws.StopSignal())
		return 0
	case ev != 0 || ptrace.IsSyscallStop(ws):
		return 0 // not expected after PTRACE_CONT: deliver nothing
	}
	if sig := int(ws.StopSignal()); !t.ownSignal(th.tid, sig) {
		return sig
	}
	return 0
}

// ownSignal reports whether thread tid, stopped with signal sig, stopped
// for the tracer's own sake: a fault on an armed page (which the thread
// re-executes once the page is restored) or one of our int3s (the thread
// is moved back onto the instruction, to run it once the original byte is
// back). Such a signal is not the program's and is not delivered.
func (t *Tracer) ownSignal(tid, sig int) bool {
	if t.optOwnSignal(tid, sig) {
		return true
	}
	switch sig {
	case int(unix.SIGSEGV):
		return t.ownFault(tid)
	case int(unix.SIGTRAP):
		return t.rewindBreakpointTrap(tid)
	}
	return false
}

// ownFault reports whether tid is stopped by a fault on an armed page.
func (t *Tracer) ownFault(tid int) bool {
	if th := t.threads[tid]; th != nil {
		t.use(th.proc)
	}
	si, err := ptrace.GetSiginfo(tid)
	if err != nil || t.engine == nil {
		return false
	}
	fp := t.engine.Page(si.Addr)
	return si.FromKernel() && si.Code == ptrace.SegvAccErr && fp != nil && fp.Armed
}

// abandon ends tracing after a tracer error (a log that cannot be written,
// a failed request) without harming the program: an attached program is
// detached, unharmed; a spawned one runs on untraced (see untrace).
func (t *Tracer) abandon() error {
	if t.spawned {
		return t.untrace()
	}
	return t.detachAll()
}
