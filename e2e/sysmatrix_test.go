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
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// anonBase is where sysmatrix.c maps its anonymous memory.
const anonBase = 0x200000000000

// TestSyscallMatrix runs system calls given buffers in traced memory (shared
// file and private anonymous, spawned and attached), while other threads
// load and store the same pages: the program's output (every call's result,
// errno and bytes) must be the untraced run's, byte for byte, and the log
// must hold exactly the kernel's accesses the program expects, per thread
// and in order, as SYS records.
func TestSyscallMatrix(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/sysmatrix.c", "-pthread")
	for _, mem := range []string{"shm", "anon"} {
		for _, mode := range []string{"spawn", "attach"} {
			t.Run(mem+"/"+mode, func(t *testing.T) {
				target := "anon"
				if mem == "shm" {
					target = shmName(t)
				}
				// Untraced.
				dir := t.TempDir()
				want, err := exec.Command(bin, target, dir, filepath.Join(dir, "expect")).Output()
				if err != nil {
					t.Fatalf("untraced run: %v", err)
				}
				os.Remove(target)
				// Traced: same program, a directory of the same length.
				dir2 := dir[:len(dir)-1] + "x"
				if err := os.Mkdir(dir2, 0o700); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir2) })
				expect, tlog := filepath.Join(dir2, "expect"), filepath.Join(dir2, "trace.log")
				sel := []string{"--map", target}
				if mem == "anon" {
					sel = []string{"--range", fmt.Sprintf("%#x+0x4000", anonBase)}
				}
				var got []byte
				if mode == "spawn" {
					cmd := exec.Command(testenv.BuildCLI(t), append(append([]string{"record", "-q", "-o", tlog}, sel...), "--", bin, target, dir2, expect)...)
					var stderr bytes.Buffer
					cmd.Stderr = &stderr
					if got, err = cmd.Output(); err != nil {
						t.Fatalf("traced run: %v\n%s", err, stderr.String())
					}
				} else {
					got = matrixAttached(t, bin, target, dir2, expect, tlog, sel)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("traced output differs from the untraced run:\n%s", lineDiff(string(want), string(got)))
				}
				checkSysRecords(t, tlog, expect, mem)
			})
		}
	}
}

// matrixAttached runs sysmatrix.c, attaches to it, lets it run its calls
// and returns its output (without the "PID ADDR" line).
func matrixAttached(t *testing.T, bin, target, dir, expect, tlog string, sel []string) []byte {
	cmd := exec.Command(bin, target, dir, expect, "wait")
	in, out, done := startPiped(t, cmd)
	first, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	f := strings.Fields(first)
	pid, _ := strconv.Atoi(f[0])
	addr, _ := strconv.ParseUint(f[1], 0, 64)
	s := startSession(t, append(append([]string{"record", "-q", "-o", tlog}, sel...), "-p", strconv.Itoa(pid))...)
	waitFor(t, "attach", func() bool { return allTraced(t, pid, s.cmd.Process.Pid) })
	waitFor(t, "armed pages", func() bool {
		p := perms(t, pid, addr, 0x4000)
		return len(p) > 0 && p[0][:3] == "---"
	})
	rest := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(out)
		rest <- b.Bytes()
	}()
	fmt.Fprintln(in, "go")
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("fixture: %v\nmmiotrace:\n%s", err, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("fixture did not finish\nmmiotrace:\n%s", s.stderr.String())
	}
	got := <-rest
	if code := s.wait(t); code != 0 {
		t.Fatalf("mmiotrace exit %d\n%s", code, s.stderr.String())
	}
	return got
}

// checkSysRecords compares the SYS records with the fixture's expectations
// ("TID name R|W|RW OFFSET LEN"), per thread and in order, and checks that
// the hammer threads' accesses were traced.
func checkSysRecords(t *testing.T, tlog, expect, mem string) {
	t.Helper()
	b, err := os.ReadFile(expect)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		tid, _ := strconv.Atoi(f[0])
		if f[4] == "0" {
			continue // a call that wrote nothing
		}
		want[tid] = append(want[tid], strings.Join(f[1:], " "))
	}
	recs := readLog(t, tlog)
	var base uint64
	if mem == "anon" {
		base = anonBase
	}
	got := map[int][]string{}
	hammer := 0
	// Each hammer thread stores 1, 2, 3... to its word and loads it back:
	// its records must be exactly that, with no access missing, whatever
	// the other threads' calls did to the page meanwhile.
	next := map[int]uint64{}
	for _, r := range recs {
		switch r.Kind {
		case trace.KindSyscall:
			got[int(r.TID)] = append(got[int(r.TID)], fmt.Sprintf("%s %v %x %x", r.Text, r.Dir, r.Phys-base, r.Len))
		case trace.KindRead, trace.KindWrite:
			if off := r.Phys - base; off != 0xf00 && off != 0x3f00 {
				continue
			}
			hammer++
			tid, n := int(r.TID), next[int(r.TID)]
			want := trace.KindRead
			if n%2 == 0 {
				want = trace.KindWrite
			}
			if r.Kind != want || r.Width != 8 || r.Uint64() != n/2+1 {
				t.Fatalf("hammer thread %d, access %d: %v %d %#x, want %v 8 %#x: an access went unseen", tid, n, r.Kind, r.Width, r.Uint64(), want, n/2+1)
			}
			next[tid] = n + 1
		case trace.KindUnknown:
			t.Errorf("UNKNOWN record at %#x", r.Phys)
		}
	}
	for tid, w := range want {
		if g := got[tid]; strings.Join(g, "\n") != strings.Join(w, "\n") {
			t.Errorf("thread %d's SYS records:\n%s", tid, lineDiff(strings.Join(w, "\n"), strings.Join(g, "\n")))
		}
	}
	for tid, g := range got {
		if _, ok := want[tid]; !ok {
			t.Errorf("SYS records from thread %d, which expected none: %v", tid, g)
		}
	}
	if hammer < 100 {
		t.Errorf("%d accesses by the hammer threads, want them hammering throughout", hammer)
	}
}

// lineDiff shows two texts side by side where they differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		mark := "  "
		if wl != gl {
			mark = "!="
		}
		fmt.Fprintf(&b, "%s want %-50.100s got %.100s\n", mark, wl, gl)
	}
	return b.String()
}

// startPiped starts cmd with pipes to its stdin and from its stdout (an
// os.Pipe, which Wait does not close under the reader), and kills it at the
// test's end. done receives Wait's result (put it back after taking it).
func startPiped(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, *bufio.Reader, chan error) {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = outW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	t.Cleanup(func() { outR.Close() })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done; done <- nil })
	return in, bufio.NewReader(outR), done
}

// TestFilterFallback: a spawned program that gave up root cannot take a
// range filter (no CAP_SYS_ADMIN, and mmiotrace, as root, did not set
// no_new_privs): the tracer says so and stops it at every system call, and
// its calls on traced memory still work, and are logged.
func TestFilterFallback(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Skip(t, "needs root for the program to drop")
	}
	bin := testenv.BuildC(t, "testdata/dropuid.c")
	shm := shmName(t)
	if err := os.WriteFile(shm, make([]byte, 4096), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shm, 0o666); err != nil {
		t.Fatal(err)
	}
	tlog := filepath.Join(t.TempDir(), "trace.log")
	res := mmiotrace(t, "record", "--map", shm, "-o", tlog, "--", bin, shm)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	if res.stdout != "abcdefghijklmnop" {
		t.Errorf("program wrote %q, want abcdefghijklmnop", res.stdout)
	}
	if !strings.Contains(res.stderr, "stops at every system call") {
		t.Errorf("no word of the fallback:\n%s", res.stderr)
	}
	var got []string
	for _, r := range readLog(t, tlog) {
		if r.Kind == trace.KindSyscall {
			got = append(got, fmt.Sprintf("%s %v %#x %#x", r.Text, r.Dir, r.Phys, r.Len))
		}
	}
	want := []string{"write R 0x0 0x10", "read W 0x64 0x10", "write R 0x64 0x10"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("SYS records %q, want %q", got, want)
	}
}
