package tracer

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
)

// errForced ends a wait for threads to stop that Force cut short.
var errForced = errors.New("forced to stop waiting for threads that did not stop")

// forceGrace is how long, after Force, the tracer still waits for threads
// it asked to stop: far more than a thread that can stop needs (a few
// microseconds), little for a user who pressed Ctrl-C twice.
const forceGrace = 200 * time.Millisecond

// collect waits until every thread in waiting has reported a stop or its
// end, and returns those reports.
//
// It waits for any tracee (wait4 -1), never for one thread: a thread that
// cannot stop (a vfork parent whose child is stopped, a thread in
// uninterruptible sleep, a thread whose stop was taken already) must not
// hold the tracer where no Ctrl-C reaches it. So the waker's wakes end the
// wait, and the reports of other tracees are queued for the loop. After
// Force it waits forceGrace more at most, then returns errForced without
// the threads that did not report.
func (t *Tracer) collect(waiting map[int]*thread) (map[int]unix.WaitStatus, error) {
	got := make(map[int]unix.WaitStatus, len(waiting))
	var deadline time.Time
	for len(got) < len(waiting) {
		forced := t.force.Load()
		if forced && deadline.IsZero() {
			deadline = time.Now().Add(forceGrace)
		}
		if forced && time.Now().After(deadline) {
			return got, errForced
		}
		tid, ws, err := ptrace.WaitAny(forced)
		switch {
		case errors.Is(err, syscall.ECHILD):
			return got, nil // nothing is left to report: they are gone
		case err != nil:
			return got, err
		case tid == 0: // WNOHANG: nothing yet
			time.Sleep(time.Millisecond)
			continue
		}
		if t.wakerReport(tid, ws) {
			continue
		}
		if _, ok := waiting[tid]; ok {
			if _, dup := got[tid]; !dup {
				got[tid] = ws
				continue
			}
		}
		t.queueStop(tid, ws)
	}
	return got, nil
}

// queueStop keeps a report for the loop. Its thread, stopped now (or gone),
// counts as held until the loop has handled it.
func (t *Tracer) queueStop(tid int, ws unix.WaitStatus) {
	t.queue = append(t.queue, stop{tid, ws})
	if th := t.threads[tid]; th != nil {
		th.queued = true
		if ws.Stopped() {
			th.held = true
		}
	}
}

// keepStopped lets go of a thread of a program that job control has
// stopped (SIGSTOP, Ctrl-Z), without letting it run: PTRACE_LISTEN leaves
// it in its group-stop, still reporting, so that SIGCONT, SIGKILL and the
// tracer's interrupts reach it. LISTEN applies only at the group-stop's own
// trap. If the tracer has used the thread since (an injected system call, a
// single-step), or has a signal to deliver, the thread is interrupted and
// resumed instead: it traps again at once, before it runs any instruction
// of its own, with a new group-stop report (or an interrupt report, if a
// SIGCONT came meanwhile), which the loop handles like this one.
func (t *Tracer) keepStopped(th *thread, sig int) error {
	if sig == 0 {
		err := ptrace.Listen(th.tid)
		if !errors.Is(err, syscall.EIO) {
			return ignoreGone(err)
		}
	}
	if err := ptrace.Interrupt(th.tid); err != nil {
		return ignoreGone(err)
	}
	return t.restart(th, sig)
}

// restart resumes a stopped thread the way the session runs it: attached
// programs under PTRACE_SYSCALL, to see mapping calls; spawned ones, which
// see them through their seccomp filter, under PTRACE_CONT, except from a
// traced syscall's entry to its exit.
func (t *Tracer) restart(th *thread, sig int) error {
	if !t.spawned || th.inSys || th.proc.syscallStops || th.bounce != nil || th.exposed != nil {
		return ignoreGone(ptrace.Syscall(th.tid, sig))
	}
	return ignoreGone(ptrace.Cont(th.tid, sig))
}

// restoreAllForked gives every fork child whose first stop has not been
// handled yet the protections of its parent's armed pages, while the tracer
// still knows them (before they are disarmed in the parent): such a child
// was born with those pages PROT_NONE. Each child's first stop is then
// queued for whoever handles the foreign processes next (the loop, or
// detachAll).
func (t *Tracer) restoreAllForked() error {
	if len(t.forked) == 0 {
		return nil
	}
	stopped := map[int]bool{}
	for _, s := range t.queue {
		if s.ws.Stopped() {
			stopped[s.tid] = true
		}
	}
	waiting := map[int]*thread{}
	for _, tid := range t.forked {
		if !stopped[tid] && ptrace.Interrupt(tid) == nil {
			waiting[tid] = &thread{tid: tid}
		}
	}
	got, err := t.collect(waiting)
	for tid, ws := range got {
		t.queueStop(tid, ws)
		if ws.Stopped() {
			stopped[tid] = true
		}
	}
	var first error
	var rest []int
	for _, tid := range t.forked {
		if !stopped[tid] {
			rest = append(rest, tid)
			continue
		}
		if err := t.restoreForked(tid); err != nil && first == nil {
			first = err
		}
	}
	t.forked = rest
	if first == nil {
		first = err
	}
	return first
}
