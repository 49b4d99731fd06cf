package ptrace

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/minielf"
)

// Spawned is a program started under ptrace, stopped at the
// PTRACE_EVENT_EXEC of the real command.
type Spawned struct {
	PID  int
	Proc *os.Process
}

// Spawn starts argv under ptrace through the seccomp shim (see shim.go),
// so that only the calls filter picks out stop the tracee (TracedSyscalls
// when filter is nil). It returns with the program stopped at its exec
// event. The calling goroutine must be locked to its OS thread and make
// every later ptrace request. env is the program's environment (nil: the
// tracer's).
//
// The shim waits on a pipe until the tracer has seized it, so that the exec
// is always seen, and only then installs the filter and executes the
// command. Seizing (rather than PTRACE_TRACEME) makes PTRACE_INTERRUPT work
// on every thread. The tracee is killed if the tracer dies
// (PTRACE_O_EXITKILL): a seccomp filter that returns SECCOMP_RET_TRACE
// without a tracer would fail the program's mmap calls with ENOSYS.
func Spawn(argv []string, stdio [3]*os.File, env []string, filter []unix.SockFilter) (*Spawned, error) {
	if filter == nil {
		filter = traceFilter(TracedSyscalls)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("command %q: %w", argv[0], unwrapExec(err))
	}
	img, err := shimImageBytes(filter)
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	// The shim runs from a memfd where the host allows it, else from a
	// temporary file (vm.memfd_noexec): see minielf.Refused.
	s, refused, err := startShim(img, true, path, argv, stdio, env)
	if refused {
		s, _, err = startShim(img, false, path, argv, stdio, env)
	}
	return s, err
}

// startShim starts the shim image img with its descriptors (see shim.go),
// seizes it, opens its gate and waits for the exec of path. refused says
// that the shim itself could not be executed from where it was written
// (minielf.Refused), so that the other place may be tried.
func startShim(img []byte, inMemory bool, path string, argv []string, stdio [3]*os.File, env []string) (s *Spawned, refused bool, err error) {
	exe, err := minielf.Write(img, "mmiotrace-shim", inMemory)
	if err != nil {
		return nil, false, fmt.Errorf("spawn: %w", err)
	}
	defer exe.Close()
	shimPath := exe.Path
	if exe.InMemory() {
		// The image's fd number in this process may be one that the
		// child's descriptor set-up reuses: name it by the number the
		// child gets it as.
		shimPath = fmt.Sprintf("/proc/self/fd/%d", shimImage)
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, false, fmt.Errorf("spawn: %w", err)
	}
	defer gateW.Close()
	reportR, reportW, err := os.Pipe()
	if err != nil {
		gateR.Close()
		return nil, false, fmt.Errorf("spawn: %w", err)
	}
	defer reportR.Close()
	files := []*os.File{stdio[0], stdio[1], stdio[2], gateR, reportW, exe.File()}
	attr := &os.ProcAttr{Files: files, Env: env}
	proc, err := os.StartProcess(shimPath, append([]string{"mmiotrace-shim", path}, argv...), attr)
	gateR.Close()
	reportW.Close()
	if err != nil {
		return nil, inMemory && minielf.Refused(err), fmt.Errorf("start %s: %w", argv[0], unwrapPathError(err))
	}
	s = &Spawned{PID: proc.Pid, Proc: proc}
	// Seize only once the shim runs: StartProcess returns as soon as the
	// child's exec of the shim has closed its close-on-exec files, which is
	// before that exec completes, and seizing then would report the shim's
	// own exec as the program's.
	var b [1]byte
	if n, _ := reportR.Read(b[:]); n != 1 {
		proc.Kill()
		proc.Wait()
		return nil, false, fmt.Errorf("start %s: the seccomp shim did not start", argv[0])
	}
	if err := Seize(s.PID, OptionsSpawn); err != nil {
		proc.Kill()
		proc.Wait()
		return nil, false, err
	}
	if _, err := gateW.Write([]byte{1}); err != nil {
		proc.Kill()
		return nil, false, fmt.Errorf("spawn: release shim: %w", err)
	}
	for {
		_, ws, err := Wait(s.PID, false)
		if err != nil {
			proc.Kill()
			return nil, false, err
		}
		switch {
		case ws.Exited():
			if ws.ExitStatus() == shimExit {
				// The report, if any, is in the pipe, whose writer
				// has exited: this read does not block.
				report, _ := io.ReadAll(reportR)
				return nil, false, shimError(report, path)
			}
			return nil, false, fmt.Errorf("%s exited before exec (status %d)", argv[0], ws.ExitStatus())
		case ws.Signaled():
			return nil, false, fmt.Errorf("%s killed before exec by %v", argv[0], ws.Signal())
		case Event(ws) == unix.PTRACE_EVENT_EXEC:
			return s, false, nil
		case ws.Stopped() && Event(ws) == 0 && !IsSyscallStop(ws):
			// A signal sent to the shim (by a user, say): deliver it.
			if err := Cont(s.PID, int(ws.StopSignal())); err != nil {
				proc.Kill()
				return nil, false, err
			}
		default:
			// Group stops: the shim makes no traced system call.
			if err := Cont(s.PID, 0); err != nil {
				proc.Kill()
				return nil, false, err
			}
		}
	}
}

// unwrapPathError drops os.StartProcess's *PathError, whose path is the
// shim's rather than the command's.
func unwrapPathError(err error) error {
	var e *os.PathError
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

func unwrapExec(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}
