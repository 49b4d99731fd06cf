package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// Regression tests for signals at the tracer (issue 12, item 5): Ctrl-C
// was sometimes ignored, and "a second signal kills it" did not hold.

// storm sends n signals to pid as fast as it can, SIGINT, SIGTERM and
// SIGHUP in turn.
func storm(pid, n int) {
	sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}
	for i := 0; i < n; i++ {
		syscall.Kill(pid, sigs[i%len(sigs)])
	}
}

// TestSignalStormAttached sends a storm of signals to record and watch
// sessions attached to a busy program: each must end at once and leave the
// program detached, with its memory as it was, running on.
func TestSignalStormAttached(t *testing.T) {
	for _, tc := range []struct {
		name    string
		threads int
		args    func(w *worker) []string
	}{
		{"record-4", 4, func(w *worker) []string {
			return []string{"record", "-q", "-o", os.DevNull, "--range", fmt.Sprintf("%#x+0x2000", w.addr)}
		}},
		{"record-32", 32, func(w *worker) []string {
			return []string{"record", "-q", "-o", os.DevNull, "--range", fmt.Sprintf("%#x+0x2000", w.addr)}
		}},
		{"watch", 4, func(w *worker) []string {
			return []string{"watch", "-q", "-o", os.DevNull, "rounds"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorker(t, "anon", strconv.Itoa(tc.threads))
			w.waitRounds(10)
			s := startSession(t, append(tc.args(w), "-p", strconv.Itoa(w.pid))...)
			waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
			time.Sleep(200 * time.Millisecond) // tracing
			storm(s.cmd.Process.Pid, 30)
			s.waitBounded(t, "signal storm")
			checkDetached(t, w)
			w.waitRounds(100)
			w.quit()
		})
	}
}

// sigcount starts testdata/sigcount.c under `mmiotrace record` with stdin
// set to stdin, and returns the session and the program's output.
func sigcount(t *testing.T, stdin *os.File, setpgid bool) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	bin := testenv.BuildC(t, "testdata/sigcount.c")
	shm := shmName(t)
	cmd := exec.Command(testenv.BuildCLI(t), "record", "-q", "-o", os.DevNull, "--map", shm, "--", bin, shm)
	cmd.Stdin = stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: setpgid}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	r := startReading(t, cmd)
	if l, err := r.ReadString('\n'); l != "ready\n" {
		t.Fatalf("sigcount: %q, %v\nstderr:\n%s", l, err, stderr.String())
	}
	return cmd, r, &stderr
}

// pty returns the slave side of a new pseudo-terminal: a stdin that is a
// terminal, as when a user runs mmiotrace from a shell.
func pty(t *testing.T) *os.File {
	t.Helper()
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		testenv.Skip(t, "no pseudo-terminals (/dev/ptmx): %v", err)
	}
	master := os.NewFile(uintptr(m), "ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return slave
}

// sigintCount reads sigcount's report and mmiotrace's exit code.
func sigintCount(t *testing.T, cmd *exec.Cmd, r *bufio.Reader, stderr *bytes.Buffer) (string, int) {
	t.Helper()
	l, _ := r.ReadString('\n')
	return strings.TrimSpace(l), runBounded(t, cmd)
}

// TestSIGINTFromKill: with stdin a terminal, a SIGINT sent to mmiotrace
// alone (kill, a script) was never passed on, since a terminal's Ctrl-C
// reaches the program by itself: the session ran on. It must reach the
// program, once.
func TestSIGINTFromKill(t *testing.T) {
	cmd, r, stderr := sigcount(t, pty(t), false)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	if got, code := sigintCount(t, cmd, r, stderr); got != "sigint 1" || code != 0 {
		t.Errorf("program says %q, mmiotrace exit %d; want \"sigint 1\", 0\nstderr:\n%s", got, code, stderr.String())
	}
}

// TestSIGINTFromTerminal: a terminal's Ctrl-C goes to the whole foreground
// process group, mmiotrace and the program: the program must get it once,
// not once more from mmiotrace.
func TestSIGINTFromTerminal(t *testing.T) {
	cmd, r, stderr := sigcount(t, pty(t), true)
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) // the process group
	if got, code := sigintCount(t, cmd, r, stderr); got != "sigint 1" || code != 0 {
		t.Errorf("program says %q, mmiotrace exit %d; want \"sigint 1\", 0\nstderr:\n%s", got, code, stderr.String())
	}
}

// TestSignalStormSpawned: the first signal goes to the program, the second
// kills it; a storm ends the session at once. Signals pending together are
// taken lowest number first, so the one passed on may be SIGHUP or SIGTERM,
// which end sigcount by themselves (it handles SIGINT only).
func TestSignalStormSpawned(t *testing.T) {
	cmd, _, stderr := sigcount(t, nil, false)
	time.Sleep(100 * time.Millisecond)
	storm(cmd.Process.Pid, 30)
	switch code := runBounded(t, cmd); code {
	case 0, 128 + int(syscall.SIGKILL), 128 + int(syscall.SIGHUP), 128 + int(syscall.SIGTERM):
	default:
		t.Errorf("mmiotrace exit %d, want 0, or the program killed by the signal passed on or by the second one\nstderr:\n%s", code, stderr.String())
	}
}

// TestKillTracerAttached is issue 12, item 11: SIGKILL of mmiotrace in
// attach mode cannot restore the pages (see docs/RELIABILITY.md), but must
// not leave the program pinned to the tracer's CPU: the waker gives every
// thread its affinity back.
func TestKillTracerAttached(t *testing.T) {
	var all unix.CPUSet
	unix.SchedGetaffinity(0, &all)
	if all.Count() < 2 {
		testenv.Skip(t, "one CPU: pinning changes nothing")
	}
	shm := shmName(t)
	w := startWorker(t, "shm", shm, "3")
	w.waitRounds(10)
	masks := func() map[int]int {
		out := map[int]int{}
		for tid := range threadStates(t, w.pid) {
			var m unix.CPUSet
			if unix.SchedGetaffinity(tid, &m) == nil {
				out[tid] = m.Count()
			}
		}
		return out
	}
	// A map that covers nothing: the program is traced (and pinned) but
	// has no armed page, so it survives the tracer's death.
	s := startSession(t, "record", "-q", "-o", filepath.Join(t.TempDir(), "log"), "--map", "/nonexistent", "-p", strconv.Itoa(w.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	waitFor(t, "pinning", func() bool {
		for _, n := range masks() {
			if n != 1 {
				return false
			}
		}
		return true
	})
	s.cmd.Process.Kill()
	waitFor(t, "affinity restored", func() bool {
		for _, n := range masks() {
			if n != all.Count() {
				return false
			}
		}
		return true
	})
	w.waitRounds(100)
	w.quit()
}

// TestSecondSignalKillsChildren: a spawned program's child processes carry
// its seccomp filter and keep the session going; the second signal must
// end them too, or "a second signal kills it" does not hold (a shell
// script's sleep kept a session alive for minutes).
func TestSecondSignalKillsChildren(t *testing.T) {
	cmd := exec.Command(testenv.BuildCLI(t), "record", "-q", "-o", os.DevNull, "--", "/bin/sh", "-c", "trap '' INT TERM; echo ready; sleep 60; sleep 60")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// The shell ignores the signals (and mmiotrace, which started it,
	// handles them) before it says so.
	if l, err := startReading(t, cmd).ReadString('\n'); l != "ready\n" {
		t.Fatalf("shell: %q, %v\nstderr:\n%s", l, err, stderr.String())
	}
	time.Sleep(100 * time.Millisecond) // the shell runs its sleep
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	start := time.Now()
	code := runBounded(t, cmd)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the session ran on %v after the second signal", d.Round(time.Second))
	}
	if code != 128+int(syscall.SIGKILL) {
		t.Errorf("mmiotrace exit %d, want %d (the program killed)\nstderr:\n%s", code, 128+int(syscall.SIGKILL), stderr.String())
	}
}

// children returns the child processes of pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(c)
			out = append(out, n)
		}
	}
	return out
}

// wakerPipe opens the tracer's end of the pipe to its waker.
func wakerPipe(t *testing.T, tracer, waker int) *os.File {
	t.Helper()
	in, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", waker))
	if err != nil {
		t.Fatal(err)
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", tracer))
	for _, fd := range fds {
		if l, _ := os.Readlink(fd); l == in {
			f, err := os.OpenFile(fd, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no fd of process %d is the waker's %s", tracer, in)
	return nil
}

// gone reports whether process pid has exited (a zombie counts: it runs no
// more).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// TestKillWhileWakerStopped: killed just after a signal woke it, mmiotrace
// leaves its waker stopped (the tracer had no time to continue it); the
// waker must still wake when the tracer dies, do its restoring and exit,
// not stay stopped forever holding mmiotrace's stderr open.
func TestKillWhileWakerStopped(t *testing.T) {
	shm := shmName(t)
	w := startWorker(t, "shm", shm, "0")
	s := startSession(t, "record", "-q", "-o", os.DevNull, "--map", shm, "-p", strconv.Itoa(w.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	waitFor(t, "the attach to end", func() bool { return threadStates(t, w.pid)[w.pid] == "S" })
	wakers := children(t, s.cmd.Process.Pid)
	if len(wakers) != 1 {
		t.Fatalf("mmiotrace has children %v, want its waker alone", wakers)
	}
	// Stop the tracer, wake the waker through the tracer's end of its
	// pipe (so that it stops itself, with no tracer to continue it), then
	// kill the tracer.
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGSTOP)
	pipe := wakerPipe(t, s.cmd.Process.Pid, wakers[0])
	if _, err := pipe.Write([]byte("w\n")); err != nil {
		t.Fatal(err)
	}
	pipe.Close()
	waitFor(t, "the waker to stop", func() bool { return threadStates(t, wakers[0])[wakers[0]] == "T" })
	s.cmd.Process.Kill()
	waitFor(t, "the waker to exit", func() bool { return gone(wakers[0]) })
	if ans := w.call("touch 5"); ans != "done" {
		t.Fatalf("touch: %q", ans)
	}
	w.quit()
}

// TestKillTracerRestoresPages: SIGKILL of mmiotrace attached to a program
// that does not touch its armed pages at that moment (idle, waiting for
// input): the waker gives the pages their protection back, and the
// program, touching them later, goes on unharmed.
func TestKillTracerRestoresPages(t *testing.T) {
	shm := shmName(t)
	w := startWorker(t, "shm", shm, "0")
	s := startSession(t, "record", "-q", "-o", os.DevNull, "--map", shm, "-p", strconv.Itoa(w.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	waitFor(t, "armed pages", func() bool {
		p := perms(t, w.pid, w.addr, 0x2000)
		return len(p) == 1 && p[0] == "---s"
	})
	// The attach is over when the program sleeps in its read again (a
	// kill while the tracer injects a system call into the thread leaves
	// it with the tracer's registers: see docs/RELIABILITY.md).
	waitFor(t, "the attach to end", func() bool { return threadStates(t, w.pid)[w.pid] == "S" })
	wakers := children(t, s.cmd.Process.Pid)
	if len(wakers) != 1 {
		t.Fatalf("mmiotrace has children %v, want its waker alone", wakers)
	}
	s.cmd.Process.Kill()
	waitFor(t, "pages restored", func() bool {
		p := perms(t, w.pid, w.addr, 0x2000)
		return len(p) == 1 && p[0] == "rw-s"
	})
	waitFor(t, "the waker to exit", func() bool { return gone(wakers[0]) })
	waitFor(t, "the waker to let go", func() bool {
		for _, tp := range tracerPids(t, w.pid) {
			if tp != 0 {
				return false
			}
		}
		return true
	})
	if ans := w.call("touch 5"); ans != "done" {
		t.Fatalf("touch: %q", ans)
	}
	w.quit()
}
