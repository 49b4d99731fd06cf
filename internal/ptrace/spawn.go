package ptrace

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Spawned is a program started under ptrace, stopped at the
// PTRACE_EVENT_EXEC of the real command.
type Spawned struct {
	PID  int
	Proc *os.Process
}

// Spawn starts argv under ptrace through the seccomp shim (self is the path
// of the mmiotrace executable, which runs RunShim when given ShimArg), so that
// only the calls filter picks out stop the tracee (TracedSyscalls when filter
// is nil). It returns with the program stopped at
// its exec event. The calling goroutine must be locked to its OS thread and
// make every later ptrace request. env is the program's environment (nil:
// the tracer's).
//
// The shim installs the filter, then waits on a pipe until the tracer has
// seized it, so that the exec is always seen. Seizing (rather than
// PTRACE_TRACEME) makes PTRACE_INTERRUPT work on every thread. The tracee is
// killed if the tracer dies (PTRACE_O_EXITKILL): a seccomp filter that
// returns SECCOMP_RET_TRACE without a tracer would fail the program's mmap
// calls with ENOSYS.
func Spawn(self string, argv []string, stdio [3]*os.File, env []string, filter []unix.SockFilter) (*Spawned, error) {
	if filter == nil {
		filter = traceFilter(TracedSyscalls)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("command %q: %w", argv[0], unwrapExec(err))
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	defer gateW.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		gateR.Close()
		return nil, fmt.Errorf("spawn: %w", err)
	}
	defer readyR.Close()
	attr := &os.ProcAttr{Files: []*os.File{stdio[0], stdio[1], stdio[2], gateR, readyW}, Env: env}
	proc, err := os.StartProcess(self, append([]string{self, ShimArg, EncodeFilter(filter), path}, argv...), attr)
	gateR.Close()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	s := &Spawned{PID: proc.Pid, Proc: proc}
	// Seize only once the shim runs: StartProcess returns as soon as the
	// child's exec of the shim has closed its close-on-exec files, which is
	// before that exec completes, and seizing then would report the shim's
	// own exec as the program's.
	var b [1]byte
	if n, _ := readyR.Read(b[:]); n != 1 {
		proc.Kill()
		proc.Wait()
		return nil, fmt.Errorf("start %s: the seccomp shim did not start", argv[0])
	}
	// The shim is a Go program with threads of its own: following its
	// clones would leave them stopped and deadlock it. The full options
	// are set at the exec event, when only the program's thread is left.
	if err := Seize(s.PID, OptionsSpawn&^(unix.PTRACE_O_TRACECLONE|unix.PTRACE_O_TRACEFORK|unix.PTRACE_O_TRACEVFORK)); err != nil {
		proc.Kill()
		proc.Wait()
		return nil, err
	}
	if _, err := gateW.Write([]byte{1}); err != nil {
		proc.Kill()
		return nil, fmt.Errorf("spawn: release shim: %w", err)
	}
	for {
		_, ws, err := Wait(s.PID, false)
		if err != nil {
			proc.Kill()
			return nil, err
		}
		switch {
		case ws.Exited():
			if ws.ExitStatus() == 127 {
				return nil, fmt.Errorf("command %q could not be executed", argv[0])
			}
			return nil, fmt.Errorf("%s exited before exec (status %d)", argv[0], ws.ExitStatus())
		case ws.Signaled():
			return nil, fmt.Errorf("%s killed before exec by %v", argv[0], ws.Signal())
		case Event(ws) == unix.PTRACE_EVENT_EXEC:
			if err := SetOptions(s.PID, OptionsSpawn); err != nil {
				proc.Kill()
				return nil, err
			}
			return s, nil
		case ws.Stopped() && Event(ws) == 0 && !IsSyscallStop(ws):
			// A signal for the shim (its Go runtime uses SIGURG): deliver.
			if err := Cont(s.PID, int(ws.StopSignal())); err != nil {
				proc.Kill()
				return nil, err
			}
		default:
			// Seccomp stops of the shim's last mmap calls, group stops.
			if err := Cont(s.PID, 0); err != nil {
				proc.Kill()
				return nil, err
			}
		}
	}
}

func unwrapExec(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}
