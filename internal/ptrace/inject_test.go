package ptrace

import (
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInjectAtForkEvent injects a system call into a thread stopped at its
// fork event, inside fork: when it resumes, fork must return the child's
// pid, as it would have without the injection. It returned -ENOSYS (the
// registers' RAX mid-call), which made glibc's pthread_create, whose clone3
// got it, fall back to clone and start the same thread twice.
func TestInjectAtForkEvent(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s, r := spawnC(t, "testdata/forkret.c")
	mem, err := OpenMem(s.PID)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := Cont(s.PID, 0); err != nil {
		t.Fatal(err)
	}
	var child uint64
	injected := false
	for {
		pid, ws, err := Wait(-1, false)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Exited() || ws.Signaled() {
			if pid == s.PID {
				break
			}
			continue
		}
		if pid == s.PID && Event(ws) == unix.PTRACE_EVENT_FORK && !injected {
			if child, err = GetEventMsg(pid); err != nil {
				t.Fatal(err)
			}
			sys, err := FindSyscallInsn(pid, mem)
			if err != nil {
				t.Fatal(err)
			}
			in := Injector{SyscallAddr: sys}
			if got, err := in.Syscall(pid, unix.SYS_GETPID); err != nil || got != int64(pid) {
				t.Fatalf("injected getpid = %d, %v; want %d", got, err, pid)
			}
			injected = true
		}
		sig := 0
		if ws.Stopped() && Event(ws) == 0 && !IsSyscallStop(ws) && ws.StopSignal() != unix.SIGSTOP {
			sig = int(ws.StopSignal())
		}
		if err := Cont(pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := io.ReadAll(r)
	if !injected {
		t.Fatal("no fork event")
	}
	if got := strings.TrimSpace(string(out)); got != strconv.FormatUint(child, 10) {
		t.Errorf("fork returned %q in the parent after the injection, want the child's pid %d", got, child)
	}
}
