package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// passive reports a session with nothing to trace in memory (no selection,
// no watches): one that only collects tracepoints, which needs no ptrace at
// all. It then costs the program nothing, not even the system call stops of
// an attached session.
func (t *Tracer) passive() bool {
	return len(t.cfg.Select.Globs) == 0 && len(t.cfg.Select.Ranges) == 0 && t.cfg.Watches == nil
}

// runPassive starts or finds the program, and waits for it to exit or for
// ctx to end (which kills a spawned program and leaves an attached one
// alone, as Run does).
func (t *Tracer) runPassive(ctx context.Context) (Result, error) {
	if len(t.cfg.Argv) > 0 {
		path, err := exec.LookPath(t.cfg.Argv[0])
		if err != nil {
			return Result{}, fmt.Errorf("command %q: %w", t.cfg.Argv[0], errors.Unwrap(err))
		}
		env := t.cfg.Env
		if env == nil {
			env = os.Environ()
		}
		proc, err := os.StartProcess(path, t.cfg.Argv, &os.ProcAttr{Env: env, Files: t.cfg.Stdio[:]})
		if err != nil {
			return Result{}, fmt.Errorf("start %s: %w", t.cfg.Argv[0], err)
		}
		t.pid = proc.Pid
		t.pidSeen.Store(int64(t.pid))
		if t.cfg.Started != nil {
			t.cfg.Started(t.pid)
		}
		stop := context.AfterFunc(ctx, func() { proc.Kill() })
		defer stop()
		st, err := proc.Wait()
		if err != nil {
			return Result{}, err
		}
		ws := st.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return Result{ExitCode: 128 + int(ws.Signal()), Signal: ws.Signal()}, nil
		}
		return Result{ExitCode: ws.ExitStatus()}, nil
	}
	fd, err := unix.PidfdOpen(t.cfg.PID, 0)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return Result{}, fmt.Errorf("process %d does not exist", t.cfg.PID)
		}
		return Result{}, fmt.Errorf("process %d: %w", t.cfg.PID, err)
	}
	defer unix.Close(fd)
	t.pid = t.cfg.PID
	t.pidSeen.Store(int64(t.pid))
	if t.cfg.Started != nil {
		t.cfg.Started(t.pid)
	}
	// Poll the pidfd, waking every 100 ms to check ctx: the process is not
	// our child, so its status is not ours to collect.
	for ctx.Err() == nil {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return Result{}, fmt.Errorf("wait for process %d: %w", t.pid, err)
		}
		if n > 0 {
			// Exited. Its status went to its parent, not to us: report 0.
			return Result{}, nil
		}
	}
	return Result{ExitCode: -1, Detached: true}, nil
}
