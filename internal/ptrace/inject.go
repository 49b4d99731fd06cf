package ptrace

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/procmaps"
)

// ErrGone means the thread exited or was killed while the tracer was using
// it.
var ErrGone = errors.New("thread is gone")

// FindSyscallInsn returns the address of a `syscall` instruction (0f 05) in
// the tracee, to which injected system calls jump. It looks in the vDSO, which
// every process has and which never changes, then in any executable mapping.
func FindSyscallInsn(pid int, mem *Mem) (uint64, error) {
	maps, err := procmaps.Read(pid)
	if err != nil {
		return 0, fmt.Errorf("find syscall instruction: %w", err)
	}
	var vdso, exec [][2]uint64
	for _, m := range maps {
		switch {
		case m.Prot()&procmaps.ProtExec == 0 || m.Path == "[vsyscall]":
		case m.Path == "[vdso]":
			vdso = append(vdso, [2]uint64{m.Start, m.End})
		case m.Path != "":
			exec = append(exec, [2]uint64{m.Start, m.End})
		}
	}
	for _, r := range append(vdso, exec...) {
		n := min(r[1]-r[0], 1<<20)
		buf := make([]byte, n)
		if err := mem.ReadAt(buf, r[0]); err != nil {
			continue
		}
		if i := bytes.Index(buf, []byte{0x0f, 0x05}); i >= 0 {
			return r[0] + uint64(i), nil
		}
	}
	return 0, errors.New("find syscall instruction: no vDSO and no syscall in executable mappings")
}

// Injector runs system calls inside a stopped tracee thread: it saves the
// registers, points RIP at a syscall instruction, single-steps it and restores
// the registers. Signals that arrive for the thread meanwhile are collected in
// Pending, to be delivered by the caller when it resumes the thread.
type Injector struct {
	SyscallAddr uint64
	// Pending receives (tid, signal) for signals that stopped the thread
	// during an injection and were held back.
	Pending func(tid, sig int)
	// JobStop, if set, receives (tid, signal) for a PTRACE_EVENT_STOP the
	// thread reported during an injection or step: a group-stop (signal
	// SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU: the program was stopped by job
	// control meanwhile) or an interrupt (SIGTRAP: no group-stop is in
	// effect). The injection goes on through it, so the thread no longer
	// sits in that stop afterwards; the caller must remember whether the
	// program is stopped, and keep the thread stopped when it lets it go.
	JobStop func(tid, sig int)
}

// eventStop passes a PTRACE_EVENT_STOP seen during an injection on to
// JobStop.
func (in *Injector) eventStop(tid int, ws unix.WaitStatus) {
	if in.JobStop != nil && Event(ws) == unix.PTRACE_EVENT_STOP {
		in.JobStop(tid, int(ws.StopSignal()))
	}
}

// Syscall runs syscall nr with args in the stopped thread tid and returns its
// result (a negative errno on failure, as the kernel returns it).
func (in *Injector) Syscall(tid int, nr uint64, args ...uint64) (int64, error) {
	var saved, r unix.PtraceRegs
	if err := GetRegs(tid, &saved); err != nil {
		return 0, err
	}
	if info, err := GetSyscallInfo(tid); err == nil && (info.Op == SyscallEntry || info.Op == SyscallSeccomp) {
		return in.syscallAtEntry(tid, saved, nr, args)
	}
	r = saved
	r.Rip = in.SyscallAddr
	r.Rax = nr
	// orig_rax = -1 keeps the kernel from restarting a syscall the thread
	// may have been interrupted in when it stopped.
	r.Orig_rax = ^uint64(0)
	regs := []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}
	for i, a := range args {
		*regs[i] = a
	}
	r.Eflags &^= 0x100 // no trap flag left over from an earlier step
	// A thread stopped inside a syscall (an exec event stop, for one) has
	// not returned to user mode yet: the first step only finishes that
	// syscall, storing its return value in RAX, and traps before our
	// instruction runs. So step until RIP is past the syscall instruction,
	// setting the registers again each time.
	var out unix.PtraceRegs
	for tries := 0; ; tries++ {
		if err := SetRegs(tid, &r); err != nil {
			return 0, err
		}
		if err := in.step(tid); err != nil {
			return 0, err
		}
		if err := GetRegs(tid, &out); err != nil {
			return 0, err
		}
		if out.Rip == in.SyscallAddr+2 {
			break
		}
		if tries == 0 && out.Rip == in.SyscallAddr {
			// The step finished the syscall the thread was stopped
			// inside, and RAX is what that syscall returned: the
			// program must find it there when it resumes, not the
			// -ENOSYS of the registers taken mid-call. A clone3 that
			// returned -ENOSYS to glibc's pthread_create made it fall
			// back to clone and start the same thread a second time,
			// on the same stack (a program crashed so, 1 run in 40,
			// after a tracer failure that injected munmap calls
			// through a thread stopped at its clone event).
			saved.Rax = out.Rax
		}
		if tries == 2 {
			SetRegs(tid, &saved)
			return 0, fmt.Errorf("thread %d: injected syscall did not run (RIP %#x)", tid, out.Rip)
		}
	}
	if err := SetRegs(tid, &saved); err != nil {
		return 0, err
	}
	return int64(out.Rax), nil
}

// syscallAtEntry injects a syscall into a thread stopped at a syscall-entry
// or seccomp stop. Such a thread cannot step an injected syscall
// instruction: resuming it first completes the syscall it entered (with
// orig_rax = -1, none), and the step trap comes at that syscall's exit,
// before the injected instruction ran. Instead the entered syscall is
// replaced by the injected one and run to its exit stop; then the thread's
// registers are restored with RIP back on its syscall instruction and RAX
// holding its number, so that its own syscall runs when it resumes, as the
// kernel restarts an interrupted syscall.
func (in *Injector) syscallAtEntry(tid int, saved unix.PtraceRegs, nr uint64, args []uint64) (int64, error) {
	r := saved
	r.Orig_rax, r.Rax = nr, nr
	regs := []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}
	for i, a := range args {
		*regs[i] = a
	}
	if err := SetRegs(tid, &r); err != nil {
		return 0, err
	}
	if err := Syscall(tid, 0); err != nil {
		return 0, err
	}
	for {
		_, ws, err := Wait(tid, false)
		if err != nil {
			return 0, err
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return 0, fmt.Errorf("thread %d: %w", tid, ErrGone)
		case !ws.Stopped():
			continue
		case Event(ws) == unix.PTRACE_EVENT_EXIT:
			return 0, fmt.Errorf("thread %d: %w", tid, ErrGone)
		case IsSyscallStop(ws):
			// After a seccomp stop an entry stop may come first.
			if info, err := GetSyscallInfo(tid); err == nil && info.Op == SyscallExit {
				if err := GetRegs(tid, &r); err != nil {
					return 0, err
				}
				saved.Rip -= 2 // the length of syscall (0f 05)
				saved.Rax = saved.Orig_rax
				if err := SetRegs(tid, &saved); err != nil {
					return 0, err
				}
				return int64(r.Rax), nil
			}
		case Event(ws) != 0:
			in.eventStop(tid, ws)
		default:
			if in.Pending != nil {
				in.Pending(tid, int(ws.StopSignal()))
			}
		}
		if err := Syscall(tid, 0); err != nil {
			return 0, err
		}
	}
}

// step single-steps tid once and waits for the trap, holding back any other
// signal that arrives first.
func (in *Injector) step(tid int) error {
	if err := SingleStep(tid, 0); err != nil {
		return err
	}
	for {
		_, ws, err := Wait(tid, false)
		if err != nil {
			return err
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return fmt.Errorf("thread %d: %w", tid, ErrGone)
		case !ws.Stopped():
			continue
		case ws.StopSignal() == unix.SIGTRAP && Event(ws) == 0:
			return nil
		case Event(ws) == unix.PTRACE_EVENT_EXIT:
			return fmt.Errorf("thread %d: %w", tid, ErrGone)
		case Event(ws) != 0 || IsSyscallStop(ws):
			// A group-stop or event stop before the step completed: the
			// step has not run yet; resume it.
			in.eventStop(tid, ws)
		default:
			if in.Pending != nil {
				in.Pending(tid, int(ws.StopSignal()))
			}
		}
		if err := SingleStep(tid, 0); err != nil {
			return err
		}
	}
}

// Step single-steps the instruction at the thread's current RIP and waits for
// it to complete, holding back other signals like Syscall does. It returns the
// signal info if the instruction itself faulted instead (si.Signo != SIGTRAP).
func (in *Injector) Step(tid int) (Siginfo, error) {
	if err := SingleStep(tid, 0); err != nil {
		return Siginfo{}, err
	}
	for {
		_, ws, err := Wait(tid, false)
		if err != nil {
			return Siginfo{}, err
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return Siginfo{}, fmt.Errorf("thread %d: %w", tid, ErrGone)
		case !ws.Stopped():
			continue
		case Event(ws) == unix.PTRACE_EVENT_EXIT:
			return Siginfo{}, fmt.Errorf("thread %d: %w", tid, ErrGone)
		case Event(ws) != 0 || IsSyscallStop(ws):
			in.eventStop(tid, ws)
		case ws.StopSignal() == unix.SIGTRAP:
			return Siginfo{Signo: int32(unix.SIGTRAP)}, nil
		default:
			si, err := GetSiginfo(tid)
			if err != nil {
				return si, err
			}
			if si.FromKernel() && (ws.StopSignal() == unix.SIGSEGV || ws.StopSignal() == unix.SIGBUS) {
				return si, nil
			}
			if in.Pending != nil {
				in.Pending(tid, int(ws.StopSignal()))
			}
		}
		if err := SingleStep(tid, 0); err != nil {
			return Siginfo{}, err
		}
	}
}
