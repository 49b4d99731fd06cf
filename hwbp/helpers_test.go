package hwbp

import (
	"bufio"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"golang.org/x/sys/unix"
)

// fixture is a running testdata/store.c, stopped by its own SIGSTOP after
// printing its addresses.
type fixture struct {
	pid                                   int
	counter, untouched, other, afterStore uint64
}

func storeBinary(t testing.TB) string {
	return testenv.BuildC(t, "testdata/store.c")
}

// startStore starts the store fixture with n stores. With traced, it runs
// under PTRACE_TRACEME and the calling goroutine, which must be locked to its
// OS thread, is its tracer; the fixture is then in the signal-delivery stop
// of its SIGSTOP (which the caller must suppress when resuming). Untraced, it
// is in a group stop and resumes on SIGCONT.
func startStore(t testing.TB, n int, traced bool) *fixture {
	t.Helper()
	cmd := exec.Command(storeBinary(t), fmt.Sprint(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: traced}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{pid: cmd.Process.Pid}
	t.Cleanup(func() {
		unix.Kill(f.pid, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(f.pid, &ws, unix.WALL, nil)
	})
	if traced {
		// The exec SIGTRAP first.
		_, ws, err := ptrace.Wait(f.pid, false)
		if err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
			t.Fatalf("waiting for exec stop: %v %#x", err, ws)
		}
		if err := ptrace.Cont(f.pid, 0); err != nil {
			t.Fatal(err)
		}
	}
	_, err = fmt.Fscanf(bufio.NewReader(out), "%v %v %v %v\n", &f.counter, &f.untouched, &f.other, &f.afterStore)
	if err != nil {
		t.Fatalf("reading fixture addresses: %v", err)
	}
	if traced {
		_, ws, err := ptrace.Wait(f.pid, false)
		if err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGSTOP {
			t.Fatalf("waiting for SIGSTOP stop: %v %#x", err, ws)
		}
	} else {
		waitStopped(t, f.pid)
	}
	return f
}

// waitStopped waits until an untraced process is in a group stop.
func waitStopped(t testing.TB, pid int) {
	t.Helper()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WUNTRACED, nil); err != nil || !ws.Stopped() {
		t.Fatalf("waiting for group stop: %v %#x", err, ws)
	}
}

func lockThread(t testing.TB) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}
