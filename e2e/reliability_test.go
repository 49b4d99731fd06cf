package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Regression tests for faults around a session (docs/RELIABILITY.md): a
// program stopped by job control when mmiotrace attaches or detaches.

// threadStates returns the state letter of every thread of pid (R, S, T
// for stopped, t for a tracing stop...).
func threadStates(t *testing.T, pid int) map[int]string {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	out := map[int]string{}
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name()))
		if err != nil {
			continue // exited
		}
		// pid (comm) state ...: comm may hold spaces, the state follows
		// the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			tid, _ := strconv.Atoi(e.Name())
			out[tid] = s[i+2 : i+3]
		}
	}
	return out
}

// allStopped reports whether every thread of pid is stopped (by job
// control, or in a tracing stop).
func allStopped(t *testing.T, pid int) bool {
	for _, st := range threadStates(t, pid) {
		if st != "T" && st != "t" {
			return false
		}
	}
	return true
}

// stopWorker stops w with SIGSTOP and waits until all its threads are.
func stopWorker(t *testing.T, w *worker) {
	t.Helper()
	if err := syscall.Kill(w.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the worker to stop", func() bool { return allStopped(t, w.pid) })
}

// waitBounded waits for a session that was told to end; it must end within
// the bound Ctrl-C promises, with exit status 0.
func (s *session) waitBounded(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			t.Fatalf("%s: mmiotrace: %v\nstderr:\n%s", what, err, s.stderr.String())
		}
	case <-time.After(10 * time.Second):
		// Its goroutines' stacks say where it is stuck.
		s.cmd.Process.Signal(syscall.SIGQUIT)
		time.Sleep(time.Second)
		t.Fatalf("%s: mmiotrace still running 10 s after SIGINT\nstderr:\n%s", what, s.stderr.String())
	}
}

// waitArmed waits until session s has attached to w and armed its pages.
func waitArmed(t *testing.T, s *session, w *worker) {
	t.Helper()
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	waitFor(t, "armed pages", func() bool {
		p := perms(t, w.pid, w.addr, 0x2000)
		return len(p) > 0 && p[len(p)-1][:3] == "---"
	})
}

// interruptStopped interrupts session s while w is stopped by job control:
// the session must end at once and leave w detached, restored and still
// stopped; w is then continued and must go on unharmed.
func interruptStopped(t *testing.T, s *session, w *worker) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGINT)
	s.waitBounded(t, "detach")
	time.Sleep(50 * time.Millisecond)
	if !allStopped(t, w.pid) {
		t.Fatalf("detach woke the stopped program: threads %v", threadStates(t, w.pid))
	}
	checkDetached(t, w)
	syscall.Kill(w.pid, syscall.SIGCONT)
	w.waitRounds(100)
	w.quit()
}

// checkDetached checks that every thread of w is untraced and its pages
// have their protections back.
func checkDetached(t *testing.T, w *worker) {
	t.Helper()
	for tid, tp := range tracerPids(t, w.pid) {
		if tp != 0 {
			t.Errorf("thread %d still traced by %d after detach", tid, tp)
		}
	}
	if p := perms(t, w.pid, w.addr, 0x2000); len(p) != 1 || p[0] != "rw-p" {
		t.Errorf("worker's pages are %v after detach, want [rw-p]", p)
	}
}

// attachStopped attaches to a worker stopped by SIGSTOP, with its pages
// armed; the program stays stopped while traced. With cont, it is then
// continued, runs traced, and mmiotrace is interrupted; without, mmiotrace
// is interrupted while the program is still stopped, which must stay
// stopped until SIGCONT. Either way the session ends at once and the
// program runs on, untraced and unharmed.
func attachStopped(t *testing.T, threads int, cont bool) {
	w := startWorker(t, "anon", strconv.Itoa(threads))
	w.waitRounds(10)
	stopWorker(t, w)
	tlog := filepath.Join(t.TempDir(), "trace.log")
	s := startSession(t, "record", "-q", "-o", tlog, "--range", fmt.Sprintf("%#x+0x2000", w.addr), "-p", strconv.Itoa(w.pid))
	waitArmed(t, s, w)
	time.Sleep(100 * time.Millisecond)
	if !allStopped(t, w.pid) {
		t.Fatalf("the stopped program runs while traced: threads %v", threadStates(t, w.pid))
	}
	if cont {
		syscall.Kill(w.pid, syscall.SIGCONT)
		w.waitRounds(100)
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	s.waitBounded(t, "detach")
	if !cont {
		time.Sleep(50 * time.Millisecond)
		if !allStopped(t, w.pid) {
			t.Fatalf("detach woke the stopped program: threads %v", threadStates(t, w.pid))
		}
		syscall.Kill(w.pid, syscall.SIGCONT)
	}
	checkDetached(t, w)
	w.waitRounds(100)
	w.quit()
	if cont {
		if n := checkRounds(t, tlog, w.addr, threads); n < 200 {
			t.Errorf("log has %d records, want at least 200 (100 rounds)", n)
		}
	}
}

// TestAttachStopped is issue 12, item 1: attaching to a stopped program
// left it unable to run after SIGCONT and mmiotrace deaf to Ctrl-C.
func TestAttachStopped(t *testing.T) {
	t.Run("continued", func(t *testing.T) { attachStopped(t, 4, true) })
	t.Run("still-stopped", func(t *testing.T) { attachStopped(t, 4, false) })
}

// detachStopped attaches to a busy worker, stops it with SIGSTOP and
// interrupts mmiotrace: the session must end at once, the program must
// stay stopped until SIGCONT and then go on, with no thread killed by a
// fault left pending on an armed page.
func detachStopped(t *testing.T, threads int) {
	w := startWorker(t, "anon", strconv.Itoa(threads))
	w.waitRounds(10)
	tlog := filepath.Join(t.TempDir(), "trace.log")
	s := startSession(t, "record", "-q", "-o", tlog, "--range", fmt.Sprintf("%#x+0x2000", w.addr), "-p", strconv.Itoa(w.pid))
	waitArmed(t, s, w)
	w.waitRounds(50)
	stopWorker(t, w)
	interruptStopped(t, s, w)
	if n := checkRounds(t, tlog, w.addr, threads); n < 100 {
		t.Errorf("log has %d records, want at least 100 (50 rounds)", n)
	}
}

// TestDetachStopped is issue 12, item 2: with 64 threads the detach hung;
// with fewer a thread could keep a pending SIGSEGV and die at SIGCONT.
func TestDetachStopped(t *testing.T) {
	for _, n := range []int{4, 16, 64} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { detachStopped(t, n) })
	}
}

// stopWhileAttaching stops a busy worker while mmiotrace attaches to it
// (after delay), then interrupts mmiotrace: whichever came first, the
// session must end at once, and the program stay stopped until SIGCONT and
// then go on unharmed.
func stopWhileAttaching(t *testing.T, threads int, delay time.Duration) {
	w := startWorker(t, "anon", strconv.Itoa(threads))
	w.waitRounds(10)
	tlog := filepath.Join(t.TempDir(), "trace.log")
	s := startSession(t, "record", "-q", "-o", tlog, "--range", fmt.Sprintf("%#x+0x2000", w.addr), "-p", strconv.Itoa(w.pid))
	time.Sleep(delay)
	stopWorker(t, w)
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	time.Sleep(100 * time.Millisecond)
	interruptStopped(t, s, w)
}

// TestStopWhileAttaching is the race behind both items: the group-stop
// reported in the middle of the attach, or while a system call was injected.
func TestStopWhileAttaching(t *testing.T) {
	for _, n := range []int{8, 64} {
		for i, d := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond} {
			t.Run(fmt.Sprintf("%d-%d", n, i), func(t *testing.T) { stopWhileAttaching(t, n, d) })
		}
	}
}

// startReading starts cmd with its stdout read through the returned reader;
// cmd is killed at the end of the test.
func startReading(t *testing.T, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return bufio.NewReader(out)
}

// detachStuck attaches to a program one of whose threads cannot stop (a
// vfork parent whose child is stopped) and interrupts mmiotrace, once
// (second: and once more): the detach must end in bounded time, through
// the thread that can stop, and leave the program's pages restored; the
// program goes on when its child is continued.
func detachStuck(t *testing.T, second bool) {
	bin := testenv.BuildC(t, "testdata/vforkstop.c", "-pthread")
	shm := shmName(t)
	cmd := exec.Command(bin, shm)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := startReading(t, cmd)
	var pid int
	var addr uint64
	if _, err := fmt.Fscanf(out, "%d %v\n", &pid, &addr); err != nil {
		t.Fatalf("vforkstop: %v", err)
	}
	s := startSession(t, "record", "-q", "-o", os.DevNull, "--map", shm, "-p", strconv.Itoa(pid))
	waitFor(t, "attach", func() bool { return allTraced(t, pid, s.cmd.Process.Pid) })
	waitFor(t, "armed pages", func() bool {
		p := perms(t, pid, addr, 0x2000)
		return len(p) > 0 && p[0][:3] == "---"
	})
	fmt.Fprintln(in, "go")
	var child int
	if _, err := fmt.Fscanf(out, "child %d\n", &child); err != nil {
		t.Fatalf("vforkstop: %v", err)
	}
	waitFor(t, "the child to stop", func() bool { return allStopped(t, child) })
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGINT)
	if second {
		time.Sleep(300 * time.Millisecond)
		s.cmd.Process.Signal(syscall.SIGINT)
	}
	s.waitBounded(t, "detach")
	t.Logf("detach took %v", time.Since(start).Round(time.Millisecond))
	if p := perms(t, pid, addr, 0x2000); len(p) != 1 || p[0] != "rw-s" {
		t.Errorf("pages are %v after detach, want [rw-s]", p)
	}
	syscall.Kill(child, syscall.SIGCONT)
	line, _ := out.ReadString('\n')
	if !strings.HasPrefix(line, "ok ") {
		t.Errorf("vforkstop: %q", line)
	}
}

// TestDetachStuckThread: Ctrl-C ends a session in bounded time, even when
// a thread cannot stop; a second Ctrl-C ends it at once.
func TestDetachStuckThread(t *testing.T) {
	t.Run("one-signal", func(t *testing.T) { detachStuck(t, false) })
	t.Run("two-signals", func(t *testing.T) { detachStuck(t, true) })
}

// TestMarkAfterKilledSession is issue 12, item 9, with real sessions: one
// killed with SIGKILL leaves its socket behind; `mmiotrace mark` without
// -p must still reach the one live session, and forget the dead one.
func TestMarkAfterKilledSession(t *testing.T) {
	t.Setenv("MMIOTRACE_RUNTIME_DIR", t.TempDir()) // this test's sessions only
	// A session with nothing armed: its program survives the kill.
	a := startWorker(t, "anon", "0")
	sa := startSession(t, "record", "-q", "-o", os.DevNull, "--map", "/nonexistent", "-p", strconv.Itoa(a.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, a.pid, sa.cmd.Process.Pid) })
	sock := filepath.Join(os.Getenv("MMIOTRACE_RUNTIME_DIR"), strconv.Itoa(a.pid)+".mark")
	waitFor(t, "the mark socket", func() bool { _, err := os.Stat(sock); return err == nil })
	sa.cmd.Process.Kill()
	sa.wait(t)
	if res := mmiotrace(t, "mark", "nobody"); res.code != 1 || !strings.Contains(res.stderr, "no mmiotrace session is running") {
		t.Errorf("mark with only a dead session: exit %d, %q", res.code, res.stderr)
	}
	shm := shmName(t)
	b := startWorker(t, "shm", shm, "0")
	tlog := filepath.Join(t.TempDir(), "trace.log")
	sb := startSession(t, "record", "-q", "-o", tlog, "--map", shm, "-p", strconv.Itoa(b.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, b.pid, sb.cmd.Process.Pid) })
	// The killed session's socket again, as if left behind now.
	staleSock(t, sock)
	waitFor(t, "the live mark socket", func() bool {
		_, err := os.Stat(filepath.Join(os.Getenv("MMIOTRACE_RUNTIME_DIR"), strconv.Itoa(b.pid)+".mark"))
		return err == nil
	})
	if res := mmiotrace(t, "mark", "to", "the", "live", "one"); res.code != 0 {
		t.Fatalf("mark: exit %d: %s", res.code, res.stderr)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("the dead session's socket is still there")
	}
	sb.cmd.Process.Signal(syscall.SIGINT)
	sb.waitBounded(t, "detach")
	b.quit()
	var marks []string
	for _, r := range readLog(t, tlog) {
		if r.Kind == trace.KindMark {
			marks = append(marks, r.Text)
		}
	}
	if strings.Join(marks, "|") != "to the live one" {
		t.Errorf("marks in the log: %q", marks)
	}
}

// staleSock makes path a socket nothing listens on.
func staleSock(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}
