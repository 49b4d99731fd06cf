package ptrace

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options every tracee gets: stop on clone, fork, vfork (and its end), exec, exit (while
// the exiting thread's memory still exists) and seccomp events, mark syscall stops with 0x80, and (for spawned tracees) die with
// the tracer, since a seccomp filter that asks for a tracer must never
// outlive it.
const (
	OptionsAttach = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK |
		unix.PTRACE_O_TRACEVFORKDONE | unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_TRACEEXIT
	OptionsSpawn = OptionsAttach | unix.PTRACE_O_TRACESECCOMP | unix.PTRACE_O_EXITKILL
)

// Raw requests that x/sys/unix does not wrap.
const (
	reqGetSyscallInfo = 0x420e // PTRACE_GET_SYSCALL_INFO, Linux 5.3
	ntX86XState       = 0x202  // NT_X86_XSTATE
)

func ptrace(req int, tid int, addr, data uintptr) error {
	// RawSyscall: ptrace requests never block, so the scheduler need not
	// know (this is on the per-hit path).
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Seize attaches to tid without stopping it (PTRACE_SEIZE).
func Seize(tid int, opts int) error {
	if err := ptrace(unix.PTRACE_SEIZE, tid, 0, uintptr(opts)); err != nil {
		return fmt.Errorf("ptrace seize %d: %w", tid, err)
	}
	return nil
}

// SetOptions sets ptrace options on a stopped tracee.
func SetOptions(tid int, opts int) error {
	if err := ptrace(unix.PTRACE_SETOPTIONS, tid, 0, uintptr(opts)); err != nil {
		return fmt.Errorf("ptrace setoptions %d: %w", tid, err)
	}
	return nil
}

// Interrupt stops a seized tracee (PTRACE_INTERRUPT); it reports a
// PTRACE_EVENT_STOP.
func Interrupt(tid int) error {
	return wrap("interrupt", tid, ptrace(unix.PTRACE_INTERRUPT, tid, 0, 0))
}

// Cont resumes tid, delivering sig if non-zero.
func Cont(tid, sig int) error {
	return wrap("cont", tid, ptrace(unix.PTRACE_CONT, tid, 0, uintptr(sig)))
}

// Syscall resumes tid until the next syscall entry or exit.
func Syscall(tid, sig int) error {
	return wrap("syscall", tid, ptrace(unix.PTRACE_SYSCALL, tid, 0, uintptr(sig)))
}

// SingleStep resumes tid for one instruction.
func SingleStep(tid, sig int) error {
	return wrap("singlestep", tid, ptrace(unix.PTRACE_SINGLESTEP, tid, 0, uintptr(sig)))
}

// Detach detaches from a stopped tid, delivering sig if non-zero.
func Detach(tid, sig int) error {
	return wrap("detach", tid, ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig)))
}

// Listen lets a tracee in group-stop stay stopped while still reporting
// events (PTRACE_LISTEN).
func Listen(tid int) error {
	return wrap("listen", tid, ptrace(unix.PTRACE_LISTEN, tid, 0, 0))
}

func wrap(op string, tid int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("ptrace %s %d: %w", op, tid, err)
}

// GetRegs reads the general-purpose registers.
func GetRegs(tid int, r *unix.PtraceRegs) error {
	return wrap("getregs", tid, ptrace(unix.PTRACE_GETREGS, tid, 0, uintptr(unsafe.Pointer(r))))
}

// SetRegs writes the general-purpose registers.
func SetRegs(tid int, r *unix.PtraceRegs) error {
	return wrap("setregs", tid, ptrace(unix.PTRACE_SETREGS, tid, 0, uintptr(unsafe.Pointer(r))))
}

// GetXState reads the thread's XSAVE image into buf and returns its length.
func GetXState(tid int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
	err := ptrace(unix.PTRACE_GETREGSET, tid, ntX86XState, uintptr(unsafe.Pointer(&iov)))
	return int(iov.Len), wrap("getregset xstate", tid, err)
}

// SetXState writes an XSAVE image read by GetXState back.
func SetXState(tid int, buf []byte) error {
	iov := unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
	return wrap("setregset xstate", tid, ptrace(unix.PTRACE_SETREGSET, tid, ntX86XState, uintptr(unsafe.Pointer(&iov))))
}

// PeekUser reads a word of the thread's struct user (debug registers live
// there).
func PeekUser(tid int, off uintptr) (uint64, error) {
	var v uint64
	// PTRACE_PEEKUSER via the raw call stores the word at data.
	err := ptrace(unix.PTRACE_PEEKUSR, tid, off, uintptr(unsafe.Pointer(&v)))
	return v, wrap("peekuser", tid, err)
}

// PokeUser writes a word of the thread's struct user.
func PokeUser(tid int, off uintptr, v uint64) error {
	return wrap("pokeuser", tid, ptrace(unix.PTRACE_POKEUSR, tid, off, uintptr(v)))
}

// Siginfo is the part of siginfo_t that mmiotrace reads.
type Siginfo struct {
	Signo int32
	Errno int32
	Code  int32
	_     int32
	Addr  uint64 // si_addr for SIGSEGV, SIGBUS, SIGTRAP
	_     [112]byte
}

// SEGV_ACCERR: invalid permissions for a mapped object, the code of a fault
// on an armed (PROT_NONE) page.
const SegvAccErr = 2

// SiKernel is the si_code range of signals the kernel raised itself (a fault
// or trap) as opposed to kill/tgkill from a process (si_code <= 0).
func (s *Siginfo) FromKernel() bool { return s.Code > 0 }

// GetSiginfo reads the signal that stopped tid.
func GetSiginfo(tid int) (Siginfo, error) {
	var si Siginfo
	err := ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(&si)))
	return si, wrap("getsiginfo", tid, err)
}

// GetEventMsg reads the message of a ptrace event stop (a new thread's id for
// clone, the former thread id for exec).
func GetEventMsg(tid int) (uint64, error) {
	var v uint64
	err := ptrace(unix.PTRACE_GETEVENTMSG, tid, 0, uintptr(unsafe.Pointer(&v)))
	return v, wrap("geteventmsg", tid, err)
}

// Syscall info operations.
const (
	SyscallNone    = 0
	SyscallEntry   = 1
	SyscallExit    = 2
	SyscallSeccomp = 3
)

// SyscallInfo is struct ptrace_syscall_info.
type SyscallInfo struct {
	Op    uint8
	_     [3]byte
	Arch  uint32
	IP    uint64
	SP    uint64
	NrOrR uint64    // entry/seccomp: syscall number; exit: return value
	Args  [6]uint64 // entry/seccomp: arguments; exit: Args[0]&0xff is is_error
	_     uint64
}

// Nr is the syscall number at an entry or seccomp stop.
func (s *SyscallInfo) Nr() uint64 { return s.NrOrR }

// Ret is the return value at an exit stop.
func (s *SyscallInfo) Ret() int64 { return int64(s.NrOrR) }

// GetSyscallInfo describes the syscall stop tid is in.
func GetSyscallInfo(tid int) (SyscallInfo, error) {
	var si SyscallInfo
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, reqGetSyscallInfo, uintptr(tid), unsafe.Sizeof(si), uintptr(unsafe.Pointer(&si)), 0, 0)
	if e != 0 {
		return si, wrap("get_syscall_info", tid, e)
	}
	return si, nil
}

// Wait waits for a state change of any traced thread (tid -1) or of one,
// including threads that are not the leader (__WALL).
func Wait(tid int, nohang bool) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	opts := unix.WALL
	if nohang {
		opts |= unix.WNOHANG
	}
	for {
		got, err := unix.Wait4(tid, &ws, opts, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return got, ws, fmt.Errorf("wait: %w", err)
		}
		return got, ws, nil
	}
}

// WaitAny waits for a state change of any traced thread or child process.
// Unlike Wait(-1, ...), it also reports the stop of a child that is not
// traced (WUNTRACED): a helper child can wake a tracer blocked here by
// stopping itself, and be continued with SIGCONT. A traced child's stops
// are reported once either way (the kernel hides a tracee's group-stop from
// a real parent that is also its tracer).
func WaitAny(nohang bool) (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	opts := unix.WALL | unix.WUNTRACED
	if nohang {
		opts |= unix.WNOHANG
	}
	for {
		got, err := unix.Wait4(-1, &ws, opts, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return got, ws, fmt.Errorf("wait: %w", err)
		}
		return got, ws, nil
	}
}

// IsStopSignal reports the signals of job control that stop a process:
// SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU. A PTRACE_EVENT_STOP with one of them
// is a group-stop; with SIGTRAP it is an interrupt or a new tracee's first
// stop, and no group-stop is in effect.
func IsStopSignal(sig unix.Signal) bool {
	switch sig {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return true
	}
	return false
}

// Event returns the ptrace event number of a stop (status>>16), or 0.
func Event(ws unix.WaitStatus) int { return int(ws>>16) & 0xff }

// IsSyscallStop reports a syscall-entry or -exit stop (with TRACESYSGOOD).
func IsSyscallStop(ws unix.WaitStatus) bool {
	return ws.Stopped() && ws.StopSignal() == unix.SIGTRAP|0x80
}
