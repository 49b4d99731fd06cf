package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// The tests of optimized probes (package kmmio/optprobe, tracer/optimize.go):
// each runs a mode of testdata/opt.c (or testdata/goasync) under
// `mmiotrace record`, with patching on (the default), and checks the trace
// against what the program did, exactly, per thread, and that the accesses
// went through the patched sites.

// optSummary is what the summary line says of optimized probes.
type optSummary struct {
	detoured, sites, slow int
}

var optLine = regexp.MustCompile(`(\d+) through optimized probes at (\d+) sites? \((\d+) by their slow path\)`)

func parseOpt(t *testing.T, stderr string) optSummary {
	t.Helper()
	m := optLine.FindStringSubmatch(stderr)
	if m == nil {
		return optSummary{}
	}
	return optSummary{atoi(m[1]), atoi(m[2]), atoi(m[3])}
}

// runOpt runs an opt.c mode traced, with extra mmiotrace flags, and
// returns the fixture's log, the trace and the run's result.
func runOpt(t *testing.T, mode string, flags []string, args ...string) (flog string, recs []trace.Record, res result) {
	t.Helper()
	bin := testenv.BuildC(t, "testdata/opt.c", "-pthread")
	dir := t.TempDir()
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
	argv := append([]string{"record", "--map", shm, "-o", tlog}, flags...)
	argv = append(append(argv, "--", bin, mode, flog, shm), args...)
	res = mmiotrace(t, argv...)
	if res.code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	return flog, readLog(t, tlog), res
}

// checkExact compares the trace of the mapping named shm with the
// fixture's per-thread log, and requires that most accesses went through
// optimized probes.
func checkExact(t *testing.T, flog string, recs []trace.Record, res result) {
	t.Helper()
	want := fixtureLog(t, flog)
	var mapID uint32
	for _, r := range recs {
		if r.Kind == trace.KindMap && mapID == 0 {
			mapID = r.MapID
		}
	}
	compareThreads(t, want, traced(t, recs, mapID))
	total := 0
	for _, w := range want {
		total += len(w)
	}
	if s := parseOpt(t, res.stderr); s.detoured < total/2 {
		t.Errorf("%d of %d accesses through optimized probes, want most\nstderr:\n%s", s.detoured, total, res.stderr)
	}
}

// TestOptNewThreads: threads created after a site was patched run it with
// identities of their own.
func TestOptNewThreads(t *testing.T) {
	flog, recs, res := runOpt(t, "newthreads", nil, "1000")
	checkExact(t, flog, recs, res)
}

// TestOptChurn: while four threads hammer the mapping, the main thread
// makes their code writable and read-only again, and again, which
// unpatches its sites (with every thread stopped, some in the detours); the
// next traps patch them again. Nothing is lost or reordered.
func TestOptChurn(t *testing.T) {
	flog, recs, res := runOpt(t, "churn", nil, "3000")
	checkExact(t, flog, recs, res)
	if s := parseOpt(t, res.stderr); s.sites < 10 {
		t.Errorf("%d patches, want many (the sites come back after each mprotect)", s.sites)
	}
}

// TestOptRingFull: eight threads hammer the mapping through a ring of 4
// records: detours find it full all the time and take their slow path (a
// trap; the tracer drains and writes the record). Still exact, per thread,
// with the threads on one CPU and on all of them (--no-pin), where threads
// are often taken out of a detour while another's stop is handled: their
// earlier records in the ring must be logged before the tracer writes
// their pending one (that order broke in 4 runs in 30 before). The
// fixture's locked xadd stays on the trap path (kmmio/optprobe.Classify).
func TestOptRingFull(t *testing.T) {
	const threads, accesses = 8, 3000
	bin := testenv.BuildC(t, "testdata/hammer.c", "-pthread")
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"pinned", []string{"--ring-slots", "4"}},
		{"unpinned", []string{"--ring-slots", "4", "--no-pin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			shm := shmName(t)
			flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
			argv := append(append([]string{"record"}, tc.flags...), "--map", shm, "-o", tlog, "--", bin, flog, shm, strconv.Itoa(threads), strconv.Itoa(accesses))
			res := mmiotrace(t, argv...)
			if res.code != 0 {
				t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
			}
			recs := readLog(t, tlog)
			compareThreads(t, fixtureLog(t, flog), traced(t, recs, mapOf(t, recs, shm).MapID))
			// A quarter of the accesses are the locked xadd's: most of
			// them must go through its detour too.
			if s := parseOpt(t, res.stderr); s.slow == 0 || s.detoured < threads*accesses*9/10 {
				t.Errorf("summary %+v: want detours for nine accesses in ten (of %d), and slow paths\nstderr:\n%s", s, threads*accesses, res.stderr)
			}
		})
	}
}

// TestOptJIT: code the program writes, makes executable and runs is
// patched; when the program makes it writable again to rewrite it, the
// patch goes (at the mprotect), and the new code's accesses are traced.
func TestOptJIT(t *testing.T) {
	flog, recs, res := runOpt(t, "jit", nil, "500")
	checkExact(t, flog, recs, res)
}

// TestOptGuard: a jump into the middle of a patched window (to the
// instruction after the probed one, relocated into the detour) lands on an
// int3 guard and is redirected to the detour's copy of that instruction.
func TestOptGuard(t *testing.T) {
	flog, recs, res := runOpt(t, "guard", nil, "200")
	want := fixtureLog(t, flog)
	compareThreads(t, want, traced(t, recs, recs[firstMap(recs)].MapID))
	if s := parseOpt(t, res.stderr); s.sites == 0 {
		t.Errorf("no site patched\nstderr:\n%s", res.stderr)
	}
}

func firstMap(recs []trace.Record) int {
	for i, r := range recs {
		if r.Kind == trace.KindMap {
			return i
		}
	}
	return 0
}

// TestOptMunmap: the traced mapping goes (munmap) and another file comes
// at the same address: the sites that accessed the old one are unpatched
// before the munmap runs, and the new mapping's accesses are exact, under
// its own map id.
func TestOptMunmap(t *testing.T) {
	second := shmName(t) + "-second"
	flog, recs, res := runOpt(t, "munmap", []string{"--map", second}, "300", second)
	want := fixtureLog(t, flog)
	var ids []uint32
	for _, r := range recs {
		if r.Kind == trace.KindMap {
			ids = append(ids, r.MapID)
		}
	}
	if len(ids) != 2 {
		t.Fatalf("MAP records for map ids %v, want two", ids)
	}
	got := traced(t, recs, ids[0])
	for tid, g := range traced(t, recs, ids[1]) {
		got[tid] = append(got[tid], g...)
	}
	compareThreads(t, want, got)
	if s := parseOpt(t, res.stderr); s.sites < 2 {
		t.Errorf("%d patches, want the sites patched for each mapping", s.sites)
	}
}

// TestOptFork: a fork child inherits the patched code, the injected
// mappings and the GS base; the tracer takes them out of it before it runs
// (the child checks, and runs the loop). The parent goes on patched. A
// followed child (the default) is traced exactly, with optimized probes of
// its own; with --no-follow it runs untraced.
func TestOptFork(t *testing.T) {
	const n = 300
	for _, follow := range []bool{true, false} {
		name, flags := "follow", []string(nil)
		if !follow {
			name, flags = "no-follow", []string{"--no-follow"}
		}
		t.Run(name, func(t *testing.T) {
			flog, recs, res := runOpt(t, "fork", flags, strconv.Itoa(n))
			checkExact(t, flog, recs, res)
			parent := map[int]bool{}
			for tid := range fixtureLog(t, flog) {
				parent[tid] = true
			}
			var child []string
			for _, r := range recs {
				if r.Kind.IsAccess() && !parent[int(r.TID)] {
					child = append(child, fmt.Sprintf("%v %#x %d", r.Kind, r.Phys, r.Uint64()))
				}
			}
			if !follow {
				if len(child) != 0 {
					t.Fatalf("%d accesses of the untraced child logged, first %s", len(child), child[0])
				}
				return
			}
			if len(child) != 2*n {
				t.Fatalf("%d accesses of the child logged, want %d", len(child), 2*n)
			}
			for i := 0; i < n; i++ {
				w, r := fmt.Sprintf("W 0xa0 %d", i), fmt.Sprintf("R 0xa0 %d", i) // hot_store and hot_load on bar+0x80
				if child[2*i] != w || child[2*i+1] != r {
					t.Fatalf("child's round %d: %s, %s; want %s, %s", i, child[2*i], child[2*i+1], w, r)
				}
			}
		})
	}
}

// TestOptExec: a hot loop, patched, then exec of the same program, which
// runs the loop again: the new image has none of the old one's patches or
// mappings (the tracer forgets them, and must not restore them into the new
// image), and gets patched in turn. Both images' accesses are exact, in one
// thread (exec keeps the tid).
func TestOptExec(t *testing.T) {
	const n = 2000
	bin := testenv.BuildC(t, "testdata/opt.c", "-pthread")
	dir := t.TempDir()
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
	res := mmiotrace(t, "record", "--map", shm, "-o", tlog, "--", bin, "exec", flog, shm, strconv.Itoa(n))
	if res.code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	want := fixtureLog(t, flog)
	for tid, acc := range fixtureLog(t, flog+".2") {
		want[tid] = append(want[tid], acc...)
	}
	if len(want) != 1 {
		t.Fatalf("fixture logs name %d threads, want the one that execs", len(want))
	}
	got, maps, _ := tracedPath(t, readLog(t, tlog), shm)
	if len(maps) < 2 {
		t.Errorf("%d maps in the trace, want one per image", len(maps))
	}
	compareThreads(t, want, got)
	if s := parseOpt(t, res.stderr); s.sites < 2 || s.detoured < n {
		t.Errorf("summary %+v: want sites patched in each image and most accesses through them\nstderr:\n%s", s, res.stderr)
	}
}

// TestOptSignals: SIGALRM every 100 µs while the program runs patched
// loads and stores; the handler makes an access of its own. Signals that
// arrive in a detour are delivered once the thread is out of it (its
// record written), so both sequences are exact: the loop's, and the
// handler's in the order it ran.
func TestOptSignals(t *testing.T) {
	const n = 50000
	flog, recs, res := runOpt(t, "signals", nil, strconv.Itoa(n))
	b, err := os.ReadFile(flog)
	if err != nil {
		t.Fatal(err)
	}
	var handled int
	if _, err := fmt.Sscanf(string(b), "HANDLER %d", &handled); err != nil {
		t.Fatalf("fixture log %q: %v", b, err)
	}
	if handled < 20 {
		t.Fatalf("%d signals handled, want many", handled)
	}
	var main, handler []string
	for _, r := range recs {
		if !r.Kind.IsAccess() {
			continue
		}
		s := fmt.Sprintf("%v %#x %d", r.Kind, r.Phys, r.Uint64()&0xFFFFFFFF)
		if r.Phys >= 0x1000 {
			handler = append(handler, s)
		} else {
			main = append(main, s)
		}
	}
	for i := 0; i < n; i++ {
		w := fmt.Sprintf("W %#x %d", i%16*4, i)
		v := 0
		if i >= 11 {
			v = i - 11
		}
		r := fmt.Sprintf("R %#x %d", (i+5)%16*4, v)
		if 2*i+1 >= len(main) || main[2*i] != w || main[2*i+1] != r {
			t.Fatalf("main loop round %d: trace has %v, want [%s %s]", i, main[min(2*i, len(main)):min(2*i+2, len(main))], w, r)
		}
	}
	if len(main) != 2*n {
		t.Errorf("%d accesses from the main loop, want %d", len(main), 2*n)
	}
	if len(handler) != handled {
		t.Fatalf("%d accesses from the handler, it ran %d times", len(handler), handled)
	}
	for k, h := range handler {
		if w := fmt.Sprintf("W %#x %d", 0x1000+k%16*4, k); h != w {
			t.Fatalf("handler access %d: %s, want %s", k, h, w)
		}
	}
	if s := parseOpt(t, res.stderr); s.detoured < n {
		t.Errorf("%d accesses through optimized probes, want most", s.detoured)
	}
}

// TestOptGoPreemption: a Go program whose goroutines make traced accesses
// in tight loops while the garbage collector preempts them (signals, many
// of them in detours): exact per thread.
func TestOptGoPreemption(t *testing.T) {
	bin := testenv.BuildGo(t, "testdata/goasync")
	dir := t.TempDir()
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
	res := mmiotrace(t, "record", "--map", shm, "-o", tlog, "--", bin, flog, shm, "4", "5000")
	if res.code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	recs := readLog(t, tlog)
	compareThreads(t, fixtureLog(t, flog), traced(t, recs, mapOf(t, recs, shm).MapID))
	if s := parseOpt(t, res.stderr); s.detoured == 0 {
		t.Errorf("no access through optimized probes\nstderr:\n%s", res.stderr)
	}
}

// TestOptDetach: threads run patched loops without pause; mmiotrace,
// attached, ends the session: on SIGINT (a detach), or because its log's
// reader went away (a tracer failure, which detaches too). The program
// then finds its code as it was, none of the tracer's mappings, a zero GS
// base and its mapping's own protection (it checks, and prints "ok").
func TestOptDetach(t *testing.T) {
	for _, how := range []string{"sigint", "log-fails"} {
		t.Run(how, func(t *testing.T) { optDetach(t, how) })
	}
}

func optDetach(t *testing.T, how string) {
	bin := testenv.BuildC(t, "testdata/opt.c", "-pthread")
	shm := shmName(t)
	dir := t.TempDir()
	prog := exec.Command(bin, "detach", filepath.Join(dir, "fixture.log"), shm)
	out, err := prog.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	prog.Stderr = os.Stderr
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	defer prog.Process.Kill()
	rd := bufio.NewReader(out)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	pid := strings.TrimSpace(line)
	patched := func() bool {
		b, _ := os.ReadFile("/proc/" + pid + "/maps")
		return strings.Contains(string(b), "mmiotrace-ring")
	}
	tlog := filepath.Join(dir, "trace.log")
	switch how {
	case "sigint":
		s := startSession(t, "record", "-q", "--map", shm, "-o", tlog, "-p", pid)
		waitFor(t, "optimized probes", patched)
		waitFor(t, "accesses in the log", func() bool {
			// The log's head only: it grows by hundreds of MB a second,
			// faster than a whole read of it (which then never ends).
			f, err := os.Open(tlog)
			if err != nil {
				return false
			}
			defer f.Close()
			b := make([]byte, 1<<20)
			n, _ := io.ReadFull(f, b)
			return strings.Count(string(b[:n]), "\nW ") > 1000
		})
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-s.done:
			s.done <- err // for wait
		case <-time.After(20 * time.Second):
			// Say where it is stuck: Go prints every goroutine on SIGQUIT.
			s.cmd.Process.Signal(syscall.SIGQUIT)
			time.Sleep(2 * time.Second)
			t.Fatalf("mmiotrace did not detach in 20 s\nstderr:\n%s", s.stderr.String())
		}
		if code := s.wait(t); code != 0 {
			t.Fatalf("mmiotrace exit %d after SIGINT\nstderr:\n%s", code, s.stderr.String())
		}
	case "log-fails":
		cmd, stderr, logr := startLogPipe(t, nil, "record", "-q", "--map", shm, "-o", "-", "-p", pid)
		sc := bufio.NewScanner(logr)
		writes := 0
		for writes <= 1000 && sc.Scan() {
			if strings.HasPrefix(sc.Text(), "W ") {
				writes++
			}
		}
		if !patched() {
			t.Fatalf("no optimized probes after %d stores logged\nstderr:\n%s", writes, stderr.String())
		}
		logr.Close() // the reader goes away
		if code := runBounded(t, cmd); code != 1 {
			t.Fatalf("mmiotrace exit %d when its log's reader left, want 1\nstderr:\n%s", code, stderr.String())
		}
		singleLine(t, stderr.String(), "broken pipe")
	}
	n, _ := strconv.Atoi(pid)
	syscall.Kill(n, syscall.SIGUSR1)
	done := make(chan string, 1)
	go func() {
		l, _ := rd.ReadString('\n')
		done <- strings.TrimSpace(l)
	}()
	select {
	case l := <-done:
		if l != "ok" {
			t.Errorf("program after detach: %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("program did not finish after detach")
	}
	if err := prog.Wait(); err != nil {
		t.Errorf("program: %v", err)
	}
	if how != "sigint" {
		return
	}
	// Streamed: the log can have tens of millions of lines, every one of
	// which must parse.
	f, err := os.Open(tlog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd2 := trace.NewReader(f)
	n = 0
	for {
		r, err := rd2.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("log line %d: %v", n, err)
		}
		if r.Kind.IsAccess() {
			n++
		}
	}
	if n < 1000 {
		t.Errorf("%d accesses traced before detach, want many", n)
	}
}
