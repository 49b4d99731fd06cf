package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
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

// Regression tests for tracer-side failures (docs/RELIABILITY.md): the log
// cannot be written (its reader is gone, the disk is full). The rule: stop
// tracing, restore every process, let the program run on, keep every record
// written so far whole, exit 1 with one line.

const busyRounds = 20000

// busy returns the command line of testdata/busy.c on shm with 4 threads,
// and the file it writes its result to.
func busy(t *testing.T, shm string) ([]string, string) {
	t.Helper()
	bin := testenv.BuildC(t, "testdata/busy.c", "-pthread")
	result := filepath.Join(t.TempDir(), "result")
	return []string{bin, shm, "4", strconv.Itoa(busyRounds), result}, result
}

// checkBusy checks that busy ran every round, its mapping calls included,
// after tracing stopped.
func checkBusy(t *testing.T, result string) {
	t.Helper()
	b, err := os.ReadFile(result)
	if err != nil {
		t.Fatalf("the program did not finish: %v", err)
	}
	if got, want := strings.TrimSpace(string(b)), fmt.Sprintf("ok %d", 4*busyRounds); got != want {
		t.Errorf("the program says %q, want %q", got, want)
	}
}

// oneLine checks that stderr is one line that contains want, and no Go
// package prefix or repeated context.
func singleLine(t *testing.T, stderr, want string) {
	t.Helper()
	msg := strings.TrimSpace(stderr)
	if strings.Count(msg, "\n") > 0 || !strings.Contains(msg, want) {
		t.Errorf("stderr %q: want one line containing %q", msg, want)
	}
	for _, bad := range []string{"write log: write log", ": trace:", ": tracer:", ": ptrace:", ": symbols:", ": hwbp:", ": kmmio:"} {
		if strings.Contains(msg, bad) {
			t.Errorf("stderr %q contains %q", msg, bad)
		}
	}
}

// wholeLog checks that the log (its bytes) is whole lines only, all of
// which parse, and returns its records.
func wholeLog(t *testing.T, b []byte) []trace.Record {
	t.Helper()
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("the log ends with a cut line: %q", b[max(0, len(b)-80):])
	}
	recs, err := trace.ParseText(bytes.NewReader(b))
	if err != nil {
		t.Errorf("the log does not read back: %v", err)
	}
	return recs
}

// runBounded runs cmd to its end, within a bound, and returns its exit
// code.
func runBounded(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not end in 60 s", cmd.Args)
	}
	return cmd.ProcessState.ExitCode()
}

// startLogPipe starts mmiotrace with args (which write the log to stdout,
// -o -) and env added to its environment, and returns the command, its
// stderr and the read end of its log, which a test closes to play a reader
// that goes away (head, less). The command is killed at the test's end.
func startLogPipe(t *testing.T, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(testenv.BuildCLI(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, stderr, out
}

// failing runs mmiotrace with args, which must fail: exit 1 with one line
// that contains msg.
func failing(t *testing.T, msg string, args ...string) {
	t.Helper()
	cmd := exec.Command(testenv.BuildCLI(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if code := runBounded(t, cmd); code != 1 {
		t.Errorf("mmiotrace exit %d, want 1\nstderr:\n%s", code, stderr.String())
	}
	singleLine(t, stderr.String(), msg)
}

// TestClosedPipeSpawned is issue 12, item 3, spawn mode: `-o - | head -1`
// killed mmiotrace with SIGPIPE, and the program with it.
func TestClosedPipeSpawned(t *testing.T) {
	shm := shmName(t)
	argv, result := busy(t, shm)
	cmd, stderr, out := startLogPipe(t, nil, append([]string{"record", "-q", "-o", "-", "--map", shm, "--"}, argv...)...)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "VERSION ") {
		t.Fatalf("first line %q: %v", line, err)
	}
	out.Close() // the reader goes away, as head does
	if code := runBounded(t, cmd); code != 1 {
		t.Errorf("mmiotrace exit %d, want 1\nstderr:\n%s", code, stderr.String())
	}
	singleLine(t, stderr.String(), "broken pipe")
	checkBusy(t, result)
}

// TestClosedPipeAttached is item 3, attach mode: the program must be
// detached, unharmed, and mmiotrace end at once.
func TestClosedPipeAttached(t *testing.T) {
	shm := shmName(t)
	w := startWorker(t, "shm", shm, "3")
	w.waitRounds(10)
	cmd, stderr, out := startLogPipe(t, nil, "record", "-q", "-o", "-", "--map", shm, "-p", strconv.Itoa(w.pid))
	r := bufio.NewReader(out)
	for i := 0; i < 10; i++ { // into the accesses
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("log line %d: %v\nstderr:\n%s", i, err, stderr.String())
		}
	}
	out.Close()
	if code := runBounded(t, cmd); code != 1 {
		t.Errorf("mmiotrace exit %d, want 1\nstderr:\n%s", code, stderr.String())
	}
	singleLine(t, stderr.String(), "broken pipe")
	for tid, tp := range tracerPids(t, w.pid) {
		if tp != 0 {
			t.Errorf("thread %d still traced by %d", tid, tp)
		}
	}
	if p := perms(t, w.pid, w.addr, 0x2000); len(p) != 1 || p[0] != "rw-s" {
		t.Errorf("worker's pages are %v after the failure, want [rw-s]", p)
	}
	w.waitRounds(100)
	w.quit()
}

// TestPipeIsLive is item 3's other half: with -o -, records reach a pipe
// while the session runs (they sat in a 4 KiB buffer until the end), and
// a MARK at once.
func TestPipeIsLive(t *testing.T) {
	shm := shmName(t)
	w := startWorker(t, "shm", shm, "0")
	dir := t.TempDir()
	cmd, stderr, out := startLogPipe(t, []string{"MMIOTRACE_RUNTIME_DIR=" + dir}, "record", "-q", "-o", "-", "--map", shm, "-p", strconv.Itoa(w.pid))
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// expect waits for a line with prefix, while the session runs.
	expect := func(prefix string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the log ended before a %q line\nstderr:\n%s", prefix, stderr.String())
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q line on the pipe in 20 s while the session runs", prefix)
			}
		}
	}
	expect("MAP ")
	if ans := w.call("touch 7"); ans != "done" {
		t.Fatalf("touch: %s", ans)
	}
	expect("W 4 ")
	mark := exec.Command(testenv.BuildCLI(t), "mark", "-p", strconv.Itoa(w.pid), "live")
	mark.Env = cmd.Env
	if b, err := mark.CombinedOutput(); err != nil {
		t.Fatalf("mark: %v\n%s", err, b)
	}
	expect("MARK ")
}

// inSmallTmpfs runs script with sh in a private mount namespace where dir
// is a tmpfs of size bytes, and returns its exit code and output.
func inSmallTmpfs(t *testing.T, dir string, size int, script string, args ...string) (int, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "mount namespaces need root (CAP_SYS_ADMIN)")
	}
	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, "%s (util-linux) not installed", tool)
		}
	}
	full := fmt.Sprintf("mount -t tmpfs -o size=%d tmpfs %q || exit 99\n%s", size, dir, script)
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", full, "sh"}, args...)...)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code := runBounded(t, cmd)
	if code == 99 {
		t.Fatalf("mount tmpfs: %s", outb.String())
	}
	return code, outb.String()
}

// TestFullDisk is issue 12, item 4: a log on a full file system killed a
// spawned program and left a cut last line.
func TestFullDisk(t *testing.T) {
	bin := testenv.BuildCLI(t)
	t.Run("tmpfs-spawned", func(t *testing.T) {
		shm := shmName(t)
		argv, result := busy(t, shm)
		dir := t.TempDir()
		small := filepath.Join(dir, "small")
		os.Mkdir(small, 0o755)
		// The log is copied out of the namespace's tmpfs for the checks.
		t.Setenv("LOGDIR", dir)
		code, out := inSmallTmpfs(t, small, 64<<10, `"$@"; rc=$?; cp "$LOGDIR/small/trace.log" "$LOGDIR/trace.log"; exit $rc`,
			append([]string{bin, "record", "-q", "-o", filepath.Join(small, "trace.log"), "--map", shm, "--"}, argv...)...)
		if code != 1 {
			t.Errorf("mmiotrace exit %d, want 1\n%s", code, out)
		}
		singleLine(t, out, "no space left on device")
		b, err := os.ReadFile(filepath.Join(dir, "trace.log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 32<<10 {
			t.Errorf("the log has %d bytes: the file system was not filled", len(b))
		}
		if recs := wholeLog(t, b); len(recs) < 100 {
			t.Errorf("the log keeps %d records", len(recs))
		}
		checkBusy(t, result)
	})
	t.Run("devfull-spawned", func(t *testing.T) {
		shm := shmName(t)
		argv, result := busy(t, shm)
		failing(t, "no space left on device", append([]string{"record", "-q", "-o", "/dev/full", "--map", shm, "--"}, argv...)...)
		checkBusy(t, result)
	})
	t.Run("devfull-attached", func(t *testing.T) {
		shm := shmName(t)
		w := startWorker(t, "shm", shm, "3")
		w.waitRounds(10)
		failing(t, "no space left on device", "record", "-q", "-o", "/dev/full", "--map", shm, "-p", strconv.Itoa(w.pid))
		if p := perms(t, w.pid, w.addr, 0x2000); len(p) != 1 || p[0] != "rw-s" {
			t.Errorf("worker's pages are %v after the failure, want [rw-s]", p)
		}
		w.waitRounds(100)
		w.quit()
	})
}
