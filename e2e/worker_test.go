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

// worker is a running testdata/worker.c, untraced at start.
type worker struct {
	t    *testing.T
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	pid  int
	addr uint64
	done chan error
	// transcript of the conversation and the worker's stderr, for failures
	transcript strings.Builder
	stderr     bytes.Buffer
}

// startWorker starts worker.c with args and reads its "PID ADDR" line.
func startWorker(t *testing.T, args ...string) *worker {
	t.Helper()
	return startProgram(t, testenv.BuildC(t, "testdata/worker.c", "-pthread"), args...)
}

// startProgram starts a fixture that talks like worker.c: "PID ADDR" first,
// then an answer to each command.
func startProgram(t *testing.T, bin string, args ...string) *worker {
	t.Helper()
	w := &worker{t: t, cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	var err error
	if w.in, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	// Not StdoutPipe: Wait, which runs concurrently, would close it and
	// lose the last lines the worker wrote before exiting.
	stdout, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdout.Close() })
	w.cmd.Stdout = pw
	w.cmd.Stderr = &w.stderr
	err = w.cmd.Start()
	pw.Close()
	if err != nil {
		t.Fatalf("start worker: %v", err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
	})
	w.out = bufio.NewReader(stdout)
	line := w.line()
	f := strings.Fields(line)
	var err1, err2 error
	if len(f) == 2 {
		w.pid, err1 = strconv.Atoi(f[0])
		w.addr, err2 = strconv.ParseUint(f[1], 0, 64)
	}
	if len(f) != 2 || err1 != nil || err2 != nil {
		t.Fatalf("worker's first line %q: want PID ADDR", line)
	}
	return w
}

// line reads one line of the worker's output, with a time limit.
func (w *worker) line() string {
	w.t.Helper()
	ch := make(chan string, 1)
	go func() {
		s, _ := w.out.ReadString('\n')
		ch <- s
	}()
	select {
	case s := <-ch:
		w.transcript.WriteString("< " + s)
		if s == "" {
			err := <-w.done
			w.done <- err
			w.t.Fatalf("worker: no output; it exited: %v\ntranscript:\n%s\nstderr:\n%s", err, w.transcript.String(), w.stderr.String())
		}
		return strings.TrimSpace(s)
	case <-time.After(20 * time.Second):
		w.t.Fatalf("worker: no answer in 20 s")
		return ""
	}
}

// call sends a command and returns the answer.
func (w *worker) call(cmd string) string {
	w.t.Helper()
	w.transcript.WriteString("> " + cmd + "\n")
	if _, err := fmt.Fprintln(w.in, cmd); err != nil {
		w.t.Fatalf("worker %s: %v", cmd, err)
	}
	return w.line()
}

func (w *worker) count() int {
	w.t.Helper()
	n, err := strconv.Atoi(w.call("count"))
	if err != nil {
		w.t.Fatalf("worker count: %v", err)
	}
	return n
}

// waitRounds waits until the worker did n more rounds.
func (w *worker) waitRounds(n int) {
	w.t.Helper()
	start := w.count()
	deadline := time.Now().Add(20 * time.Second)
	for w.count() < start+n {
		if time.Now().After(deadline) {
			w.t.Fatalf("worker made no progress: %d rounds in 20 s", w.count()-start)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quit ends the worker and checks that it found its memory intact.
func (w *worker) quit() {
	w.t.Helper()
	if ans := w.call("quit"); !strings.HasPrefix(ans, "ok ") {
		w.t.Errorf("worker: %s", ans)
	}
	select {
	case err := <-w.done:
		w.done <- err
		if err != nil {
			w.t.Errorf("worker: %v", err)
		}
	case <-time.After(20 * time.Second):
		w.t.Fatalf("worker did not exit")
	}
}

// session is a background mmiotrace run.
type session struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error
}

func startSession(t *testing.T, args ...string) *session {
	t.Helper()
	s := &session{cmd: exec.Command(testenv.BuildCLI(t), args...), done: make(chan error, 1)}
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start mmiotrace: %v", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		s.done <- nil
	})
	return s
}

// wait waits for the session to end and returns its exit code.
func (s *session) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("mmiotrace: %v", err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("mmiotrace did not end in 30 s\nstderr:\n%s", s.stderr.String())
		return -1
	}
}

// tracerPids returns the TracerPid of every thread of pid.
func tracerPids(t *testing.T, pid int) map[int]int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	out := map[int]int{}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if err != nil {
			continue // exited
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
				out[tid] = atoi(v)
			}
		}
	}
	return out
}

// perms returns the permission fields of pid's mappings that overlap
// [addr, addr+n), in address order.
func perms(t *testing.T, pid int, addr, n uint64) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatalf("maps: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err != nil {
			continue
		}
		if lo < addr+n && addr < hi {
			out = append(out, f[1])
		}
	}
	return out
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// allTraced reports whether every thread of pid is traced by a thread of
// process tracer (TracerPid names the tracing thread).
func allTraced(t *testing.T, pid, tracer int) bool {
	for _, tp := range tracerPids(t, pid) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", tracer, tp)); tp == 0 || err != nil {
			return false
		}
	}
	return true
}

// checkRounds checks the worker threads' records: per thread, stores of
// consecutive counter values to the thread's own slot, each followed by a
// load of the same value; the first record may be a load and the last a
// store (the session started or ended between them). base is the Phys of
// the pages' start. It returns the number of records.
func checkRounds(t *testing.T, tlog string, base uint64, threads int) int {
	t.Helper()
	recs := readLog(t, tlog)
	var mapID uint32
	for _, r := range recs {
		if r.Kind == trace.KindMap {
			mapID = r.MapID
		}
	}
	if mapID == 0 {
		t.Fatalf("no MAP record in the log")
	}
	byTID := traced(t, recs, mapID)
	if len(byTID) != threads {
		t.Errorf("records from %d threads, want %d", len(byTID), threads)
	}
	n := 0
	for tid, acc := range byTID {
		n += len(acc)
		if len(acc) > 0 && acc[0].Dir == 'R' {
			acc = acc[1:]
		}
		var prev uint64
		for i, a := range acc {
			want := byte("WR"[i%2])
			v, _ := strconv.ParseUint(a.Value, 16, 64)
			v = swap64(v)
			idx := v >> 48
			switch {
			case a.Dir != want || a.Width != 8:
				t.Fatalf("tid %d record %d: %v, want %c8", tid, i, a, want)
			case a.Off != base+0x1000+64*idx:
				t.Fatalf("tid %d record %d: %v at the wrong slot for thread %d", tid, i, a, idx)
			case i%2 == 1 && a.Value != acc[i-1].Value:
				t.Fatalf("tid %d record %d: load %v after store %v", tid, i, a, acc[i-1])
			case i%2 == 0 && i > 0 && v != prev+1:
				t.Fatalf("tid %d record %d: store %v after counter %#x: a round is missing", tid, i, a, prev)
			}
			prev = v
		}
	}
	return n
}

// swap64 turns the memory-order hex of a little-endian value, parsed as a
// number, into the value.
func swap64(v uint64) uint64 {
	var r uint64
	for i := 0; i < 8; i++ {
		r = r<<8 | v&0xff
		v >>= 8
	}
	return r
}

// testDetach attaches to a busy worker, lets it run traced, sends sig to
// mmiotrace mid-trace, and checks the worker goes on, untraced, with its
// original protections, and that the log holds what it did while traced.
func testDetach(t *testing.T, sig syscall.Signal, anon bool) {
	const threads = 3
	shm := shmName(t)
	var w *worker
	if anon {
		w = startWorker(t, "anon", strconv.Itoa(threads))
	} else {
		w = startWorker(t, "shm", shm, strconv.Itoa(threads))
	}
	w.waitRounds(10)
	orig := perms(t, w.pid, w.addr, 0x2000)
	want := "rw-s"
	if anon {
		want = "rw-p"
	}
	if len(orig) != 1 || orig[0] != want {
		t.Fatalf("worker's pages are %v before tracing, want [%s]", orig, want)
	}

	tlog := filepath.Join(t.TempDir(), "trace.log")
	args := []string{"record", "-q", "-o", tlog, "-p", strconv.Itoa(w.pid)}
	var base uint64
	if anon {
		args = append(args, "--range", fmt.Sprintf("%#x+0x2000", w.addr))
		base = w.addr
	} else {
		args = append(args, "--map", shm)
	}
	s := startSession(t, args...)
	mpid := s.cmd.Process.Pid
	waitFor(t, "attach", func() bool {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("worker ended (%v)\nmmiotrace stderr:\n%s", err, s.stderr.String())
		default:
		}
		return allTraced(t, w.pid, mpid)
	})
	waitFor(t, "armed pages", func() bool {
		p := perms(t, w.pid, w.addr, 0x2000)
		return len(p) > 0 && p[len(p)-1][:3] == "---"
	})
	w.waitRounds(100)
	s.cmd.Process.Signal(sig)
	if code := s.wait(t); code != 0 {
		t.Fatalf("mmiotrace exit %d after %v\nstderr:\n%s", code, sig, s.stderr.String())
	}

	select {
	case err := <-w.done:
		w.done <- err
		t.Fatalf("worker died after detach: %v\nmmiotrace stderr:\n%s", err, s.stderr.String())
	case <-time.After(50 * time.Millisecond):
	}
	for tid, tp := range tracerPids(t, w.pid) {
		if tp != 0 {
			t.Errorf("thread %d still traced by %d after detach", tid, tp)
		}
	}
	if p := perms(t, w.pid, w.addr, 0x2000); len(p) != 1 || p[0] != want {
		t.Errorf("worker's pages are %v after detach, want [%s]", p, want)
	}
	w.waitRounds(100)
	w.quit()
	if n := checkRounds(t, tlog, base, threads); n < 200 {
		t.Errorf("log has %d records, want at least 200 (100 rounds)", n)
	}
}

func TestDetachSIGINT(t *testing.T)    { testDetach(t, syscall.SIGINT, false) }
func TestDetachSIGTERM(t *testing.T)   { testDetach(t, syscall.SIGTERM, false) }
func TestDetachAnonRange(t *testing.T) { testDetach(t, syscall.SIGINT, true) }

// TestMark adds a MARK to a running session with `mmiotrace mark -p PID`:
// it lands in the log between the accesses made before and after.
func TestMark(t *testing.T) {
	shm := shmName(t)
	w := startWorker(t, "shm", shm, "0")
	tlog := filepath.Join(t.TempDir(), "trace.log")
	s := startSession(t, "record", "-q", "-o", tlog, "--map", shm, "-p", strconv.Itoa(w.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	waitFor(t, "armed pages", func() bool {
		p := perms(t, w.pid, w.addr, 0x2000)
		return len(p) > 0 && p[0][:3] == "---"
	})
	if ans := w.call("touch 1"); ans != "done" {
		t.Fatalf("touch: %s", ans)
	}
	res := mmiotrace(t, "mark", "-p", strconv.Itoa(w.pid), "hello", "world")
	if res.code != 0 {
		t.Fatalf("mark: exit %d\n%s", res.code, res.stderr)
	}
	if ans := w.call("touch 2"); ans != "done" {
		t.Fatalf("touch: %s", ans)
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	if code := s.wait(t); code != 0 {
		t.Fatalf("mmiotrace exit %d\n%s", code, s.stderr.String())
	}
	w.quit()
	var seq []string
	for _, r := range readLog(t, tlog) {
		switch r.Kind {
		case trace.KindMark:
			seq = append(seq, "MARK "+r.Text)
		case trace.KindWrite, trace.KindRead:
			seq = append(seq, fmt.Sprintf("%v %d %#x %#x", r.Kind, r.Width, r.Phys, r.Uint64()))
		}
	}
	want := []string{"W 4 0x800 0x1", "MARK hello world", "W 4 0x800 0x2"}
	if strings.Join(seq, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(seq, "\n"), strings.Join(want, "\n"))
	}
}
