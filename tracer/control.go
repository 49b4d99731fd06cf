package tracer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
)

// WakerArg is the argument with which mmiotrace re-executes itself as the
// waker: a child that exits when its stdin closes. The tracer blocks in
// wait4 for its tracees; closing the pipe makes wait4 return, which is how
// a cancellation reaches the tracer thread without signalling the program.
const WakerArg = "__mmiotrace_waker"

// RunHelper runs the helper process mmiotrace re-executes itself as (the
// seccomp shim or the waker), when args (os.Args) ask for one. main must call
// it first, from a goroutine locked to the main thread (see
// ptrace.RunShim), and exit with the code it returns when handled.
func RunHelper(args []string) (code int, handled bool) {
	if len(args) < 2 {
		return 0, false
	}
	switch args[1] {
	case ptrace.ShimArg:
		return ptrace.RunShim(args[2:]), true
	case WakerArg:
		io.Copy(io.Discard, os.Stdin)
		return 0, true
	}
	return 0, false
}

func (t *Tracer) startWaker() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("waker: %w", err)
	}
	defer r.Close()
	p, err := os.StartProcess(t.cfg.Self, []string{t.cfg.Self, WakerArg}, &os.ProcAttr{Files: []*os.File{r, nil, os.Stderr}})
	if err != nil {
		w.Close()
		return fmt.Errorf("start waker %s: %w", t.cfg.Self, err)
	}
	t.waker, t.wakePipe = p, w
	return nil
}

// wake makes the tracer's wait4 return. Safe from any goroutine.
func (t *Tracer) wake() { t.wakeOnce.Do(func() { t.wakePipe.Close() }) }

func (t *Tracer) stopWaker() {
	t.wake()
	if t.waker != nil {
		t.waker.Wait()
		t.waker = nil
	}
}

// spawn starts the command under the seccomp shim and prepares its image.
func (t *Tracer) spawn() error {
	s, err := ptrace.Spawn(t.cfg.Self, t.cfg.Argv, t.cfg.Stdio, t.cfg.Env)
	if err != nil {
		return err
	}
	t.pid, t.proc, t.spawned = s.PID, s.Proc, true
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

// ErrPermission is returned when the tracer may not trace the process.
var ErrPermission = errors.New("not permitted to trace it: run as root or with CAP_SYS_PTRACE, or set kernel.yama.ptrace_scope=0 (sysctl)")

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
	t.pid = pid
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
					return fmt.Errorf("attach to process %d: %w", pid, ErrPermission)
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

// releaseAll detaches from threads seized before anything was armed.
func (t *Tracer) releaseAll() {
	for tid := range t.threads {
		ptrace.Detach(tid, 0)
	}
	t.threads = map[int]*thread{}
}

func (t *Tracer) anyHeld() *thread {
	if th := t.threads[t.pid]; th != nil && th.held {
		return th
	}
	for _, th := range t.threads {
		if th.held {
			return th
		}
	}
	return nil
}

// stopOthers stops every running thread but except (nil: all), with
// PTRACE_INTERRUPT, and waits until each is stopped. A thread may report a
// different stop first (a signal, a fault, a syscall); that stop is queued
// for the loop, and the thread, which is stopped, counts as held. The
// interrupt still pending for it then gives one extra stop later, which the
// loop resumes.
func (t *Tracer) stopOthers(except *thread) error {
	var waiting []*thread
	for _, o := range t.threads {
		if o == except || o.held || o.queued {
			continue
		}
		if err := ptrace.Interrupt(o.tid); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				continue
			}
			return err
		}
		waiting = append(waiting, o)
	}
	for _, o := range waiting {
		for {
			_, ws, err := ptrace.Wait(o.tid, false)
			if err != nil {
				break // gone and reaped
			}
			if ws.Exited() || ws.Signaled() {
				t.queue = append(t.queue, stop{o.tid, ws})
				o.queued = true
				break
			}
			if !ws.Stopped() {
				continue
			}
			o.held = true
			if ptrace.Event(ws) == unix.PTRACE_EVENT_STOP && ws.StopSignal() == unix.SIGTRAP {
				break
			}
			t.queue = append(t.queue, stop{o.tid, ws})
			o.queued = true
			break
		}
	}
	return nil
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
// thread simply re-executes once the page is restored.
func (t *Tracer) detachAll() error {
	if err := t.stopOthers(nil); err != nil {
		return err
	}
	sigs := map[int]int{}
	queued := map[int]bool{}
	var rest []stop
	for _, s := range t.queue {
		th := t.threads[s.tid]
		if th == nil || !s.ws.Stopped() {
			rest = append(rest, s)
			continue
		}
		queued[s.tid] = true
		if ptrace.Event(s.ws) == 0 && !ptrace.IsSyscallStop(s.ws) {
			if sig := int(s.ws.StopSignal()); !t.ownSignal(s.tid, sig) {
				sigs[s.tid] = sig
			}
		}
		th.queued = false
		th.held = true
	}
	t.queue = rest
	// A thread that faulted on an armed page, or hit one of our int3s,
	// just before its interrupt stop still has the SIGSEGV or SIGTRAP
	// pending (the kernel reports the interrupt first). Detached, it would
	// die of it: take the signal now.
	for tid, th := range t.threads {
		if th.held && !queued[tid] && ownSignalPending(t.pid, tid) {
			if sig := t.takeSignal(tid); sig != 0 {
				sigs[tid] = sig
			}
		}
	}
	var first error
	if th := t.anyHeld(); th != nil && t.engine != nil {
		t.injTID = th.tid
		first = t.engine.DisarmAll()
	}
	if err := t.clearWatches(); err != nil && first == nil {
		first = err
	}
	for tid, th := range t.threads {
		if !th.held {
			continue
		}
		t.unpinThread(th)
		sig := sigs[tid]
		if sig == 0 && len(th.sigs) > 0 {
			sig = th.sigs[0]
		}
		if err := ptrace.Detach(tid, sig); err != nil && !errors.Is(err, syscall.ESRCH) && first == nil {
			first = err
		}
	}
	for tid := range t.foreign {
		ptrace.Interrupt(tid)
		ptrace.Wait(tid, false)
		ptrace.Detach(tid, 0)
	}
	for tid := range t.early { // stopped, not yet announced
		ptrace.Detach(tid, 0)
	}
	t.threads = map[int]*thread{}
	t.foreign = map[int]bool{}
	t.result = Result{ExitCode: -1, Detached: true}
	return first
}

// ownSignalPending reports whether SIGSEGV or SIGTRAP is pending for
// thread tid (faults and int3 traps are signalled to the thread alone).
func ownSignalPending(pid, tid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigPnd:"); ok {
			mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return mask&(1<<(unix.SIGSEGV-1)|1<<(unix.SIGTRAP-1)) != 0
		}
	}
	return false
}

// takeSignal resumes thread tid, held at an interrupt stop with a signal
// pending, to its signal-delivery stop, which comes before it runs any
// code. It returns the signal to deliver at detach: none for the tracer's
// own (see ownSignal).
func (t *Tracer) takeSignal(tid int) int {
	if err := ptrace.Cont(tid, 0); err != nil {
		return 0
	}
	for {
		_, ws, err := ptrace.Wait(tid, false)
		if err != nil || ws.Exited() || ws.Signaled() {
			return 0
		}
		if !ws.Stopped() {
			continue
		}
		if ptrace.Event(ws) != 0 || ptrace.IsSyscallStop(ws) {
			return 0 // not expected: the thread is stopped, deliver nothing
		}
		if sig := int(ws.StopSignal()); !t.ownSignal(tid, sig) {
			return sig
		}
		return 0
	}
}

// ownSignal reports whether thread tid, stopped with signal sig, stopped
// for the tracer's own sake: a fault on an armed page (which the thread
// re-executes once the page is restored) or one of our int3s (the thread
// is moved back onto the instruction, to run it once the original byte is
// back). Such a signal is not the program's and is not delivered.
func (t *Tracer) ownSignal(tid, sig int) bool {
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
	si, err := ptrace.GetSiginfo(tid)
	if err != nil || t.engine == nil {
		return false
	}
	fp := t.engine.Page(si.Addr)
	return si.FromKernel() && si.Code == ptrace.SegvAccErr && fp != nil && fp.Armed
}

// abandon ends a session after a tracer error: an attached program is
// detached unharmed; a spawned one is killed (its seccomp filter needs us).
func (t *Tracer) abandon() error {
	if t.spawned {
		t.Kill()
		return nil
	}
	return t.detachAll()
}
