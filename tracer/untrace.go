package tracer

import (
	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
)

// untrace ends the tracing of a spawned program after a tracer failure and
// lets the program run on to its end.
//
// The program cannot just be detached. It carries the seccomp filter that
// stops its mapping calls for the tracer (SECCOMP_RET_TRACE), and without a
// tracer that uses PTRACE_O_TRACESECCOMP the kernel fails those calls with
// ENOSYS instead of running them (the rule since the option was added,
// Linux 3.5), which no program survives for long: malloc, thread stacks and
// the Go heap all need mmap. A filter cannot be removed. So mmiotrace takes
// back everything it put in the program (quiesce: armed pages, watches, the
// pinning) and stays its tracer, passing every stop on untouched, until the
// program and the children that inherited the filter are gone.
func (t *Tracer) untrace() error {
	sigs, err := t.quiesce()
	t.passthrough = true
	for tid, th := range t.threads {
		th.inSys = false
		if th.held {
			if rerr := t.resume(th, sigs[tid]); rerr != nil && err == nil {
				err = rerr
			}
		}
	}
	if lerr := t.loop(); lerr != nil && err == nil {
		err = lerr
	}
	return err
}

// passOn handles a stop in passthrough mode: nothing is traced any more;
// every stop is resumed as it came, signals delivered, group-stops kept.
func (t *Tracer) passOn(s stop) error {
	tid, ws := s.tid, s.ws
	if ws.Exited() || ws.Signaled() {
		if t.foreign[tid] {
			delete(t.foreign, tid)
			delete(t.vforked, tid)
		} else {
			t.exited(tid, ws)
		}
		return nil
	}
	if !ws.Stopped() {
		return nil
	}
	if t.threads[tid] == nil && !t.foreign[tid] {
		// A tracee whose creator's event was not seen: a thread or a
		// child process. Counting it as a child process keeps the
		// session going until it ends, whichever it is.
		t.foreign[tid] = true
	}
	sig := 0
	switch ev := ptrace.Event(ws); {
	case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
		if msg, err := ptrace.GetEventMsg(tid); err == nil {
			if t.foreign[tid] && ev == unix.PTRACE_EVENT_CLONE {
				ev = -1 // a thread of a child process
			}
			t.adopt(int(msg), ev)
		}
	case ev == unix.PTRACE_EVENT_EXEC && !t.foreign[tid]:
		// Every other thread of its process is gone; the one that called
		// exec is the leader now.
		if th := t.threads[tid]; th != nil {
			pid := th.pid
			for other, o := range t.threads {
				if o.pid == pid && other != pid && other != tid {
					delete(t.threads, other)
				}
			}
			if tid != pid {
				delete(t.threads, tid)
				th.tid = pid
				t.threads[pid] = th
			}
		}
	case ev == unix.PTRACE_EVENT_STOP && ptrace.IsStopSignal(ws.StopSignal()):
		return t.keepStopped(&thread{tid: tid}, 0)
	case ev != 0 || ptrace.IsSyscallStop(ws):
	default:
		sig = int(ws.StopSignal())
		t.sawSignal(sig)
	}
	return ignoreGone(ptrace.Cont(tid, sig))
}
