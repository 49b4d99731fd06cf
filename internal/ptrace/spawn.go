package ptrace

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spawned is a program started under ptrace, stopped at its first
// instruction after execve of the real command.
type Spawned struct {
	PID  int
	Proc *os.Process
}

// Spawn starts argv under ptrace and returns it stopped right after the exec
// of the real program. With seccomp, it runs through the shim (self is the
// path of the mmiotrace executable) so that only TracedSyscalls stop the
// tracee; without it, every syscall must be traced with PTRACE_SYSCALL. The
// calling goroutine must be locked to its OS thread and make every later
// ptrace request.
//
// The tracee is killed if the tracer dies (PTRACE_O_EXITKILL): a seccomp
// filter that returns SECCOMP_RET_TRACE without a tracer would fail the
// program's mmap calls with ENOSYS.
func Spawn(self string, argv []string, seccomp bool, stdio [3]*os.File) (*Spawned, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("command %q: %w", argv[0], unwrapExec(err))
	}
	args := argv
	if seccomp {
		path, args = self, append([]string{ShimArg, ShimArg, path}, argv...)
	}
	attr := &os.ProcAttr{
		Files: stdio[:],
		Sys:   &syscall.SysProcAttr{Ptrace: true},
	}
	proc, err := os.StartProcess(path, args, attr)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	s := &Spawned{PID: proc.Pid, Proc: proc}
	// First stop: SIGTRAP after the (shim's) execve, from PTRACE_TRACEME.
	if err := s.waitTrap(); err != nil {
		return nil, err
	}
	opts := OptionsAttach | unix.PTRACE_O_EXITKILL
	if seccomp {
		opts = OptionsSpawn
	}
	if err := SetOptions(s.PID, opts); err != nil {
		proc.Kill()
		return nil, err
	}
	if !seccomp {
		return s, nil
	}
	// Run the shim until it executes the real program. Its Go runtime may
	// start threads; they vanish at execve. Its own mmap calls stop at
	// seccomp only after the filter is installed, just before execve.
	if err := Cont(s.PID, 0); err != nil {
		proc.Kill()
		return nil, err
	}
	for {
		tid, ws, err := Wait(-1, false)
		if err != nil {
			proc.Kill()
			return nil, err
		}
		switch {
		case tid == s.PID && (ws.Exited() || ws.Signaled()):
			if ws.Exited() && ws.ExitStatus() == 127 {
				return nil, fmt.Errorf("command %q could not be executed", argv[0])
			}
			return nil, fmt.Errorf("shim for %q ended before exec: %v", argv[0], ws)
		case ws.Exited() || ws.Signaled():
			continue
		case Event(ws) == unix.PTRACE_EVENT_EXEC:
			return s, nil
		case ws.Stopped() && Event(ws) == 0 && ws.StopSignal() != unix.SIGTRAP && ws.StopSignal() != unix.SIGSTOP:
			// A real signal for the shim: deliver it.
			if err := Cont(tid, int(ws.StopSignal())); err != nil && tid == s.PID {
				proc.Kill()
				return nil, err
			}
		default:
			// Clone stops, new threads' initial stops, seccomp stops of
			// the shim: resume without a signal.
			Cont(tid, 0)
		}
	}
}

func (s *Spawned) waitTrap() error {
	_, ws, err := Wait(s.PID, false)
	if err != nil {
		s.Proc.Kill()
		return err
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("spawned program did not stop at exec: %v", ws)
	}
	return nil
}

func unwrapExec(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}
