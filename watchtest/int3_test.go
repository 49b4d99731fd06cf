package watchtest

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The tests of execute watches served by int3 breakpoints run on every
// host (--backend pages forces int3 where debug registers would serve).

var pages = backend{name: "pages"}

// xHits returns the X hits of a log, and checks they are all at addr.
func xHits(t *testing.T, r *run, addr uint64) []access {
	t.Helper()
	var out []access
	for i, h := range r.log.hits {
		if h.Dir != 'X' {
			continue
		}
		if h.Addr != addr || r.log.pcs[i] != addr {
			t.Errorf("X hit %v at pc %#x, want %#x", h, r.log.pcs[i], addr)
		}
		out = append(out, h)
	}
	return out
}

// fixtureX returns the fixture's own X lines (calls of tick), widths 0.
func fixtureX(acc []access) []access {
	var out []access
	for _, a := range acc {
		if a.Dir == 'X' {
			a.Width = 0
			out = append(out, a)
		}
	}
	return out
}

// TestInt3Threads: eight threads call a breakpointed function 200 times
// each, released at once by a barrier, so they hit the breakpoint together:
// every call is logged once, on the right thread, in order.
func TestInt3Threads(t *testing.T) {
	exe := buildFix(t)
	r := watch(t, pages, []string{"tick:--x"}, exe, "execmt", "200", "7")
	if got := servedBy(r.stderr, "tick"); got != "int3 breakpoint" {
		t.Fatalf("tick served by %q, want int3 breakpoint\n%s", got, r.stderr)
	}
	addr, _ := r.log.watchRange(t, "tick")
	want := fixtureX(r.fixture)
	if len(want) != 8*200 || threads(want) != 8 {
		t.Fatalf("fixture logged %d calls from %d threads, want 1600 from 8", len(want), threads(want))
	}
	xHits(t, r, addr)
	compareByThread(t, want, r.log.hits)
}

// TestInt3StepThreads is TestInt3Threads for a function whose first
// instruction the tracer cannot emulate: each hit single-steps it with the
// original byte in place and every other thread stopped.
func TestInt3StepThreads(t *testing.T) {
	exe := buildFix(t)
	r := watch(t, pages, []string{"tick_step:--x"}, exe, "execmt", "100", "3", "step")
	addr, _ := r.log.watchRange(t, "tick_step")
	want := fixtureX(r.fixture)
	if len(want) != 4*100 || threads(want) != 4 {
		t.Fatalf("fixture logged %d calls from %d threads, want 400 from 4", len(want), threads(want))
	}
	xHits(t, r, addr)
	compareByThread(t, want, r.log.hits)
}

// TestInt3Hot: a breakpoint on a function called in a tight loop; the
// count is exact and the program's own result is unchanged.
func TestInt3Hot(t *testing.T) {
	exe := buildFix(t)
	const n = 20000
	r := watch(t, pages, []string{"hot:--x"}, exe, "hot", strconv.Itoa(n))
	addr, _ := r.log.watchRange(t, "hot")
	if got := len(xHits(t, r, addr)); got != n {
		t.Errorf("%d X hits on hot, want %d", got, n)
	}
	b, err := os.ReadFile(r.fixturePath)
	if err != nil || !strings.Contains(string(b), fmt.Sprintf("hot %d\n", n)) {
		t.Errorf("the program counted differently under the breakpoint: %q, %v", b, err)
	}
}

// TestInt3Fork: the program hits the breakpoint, forks a child that calls
// the function three times, and calls it again. The child inherits the
// int3 bytes with its copy of the text: followed (the default), its calls
// are watched and exact; with --no-follow, the tracer gives it the
// original bytes back before it runs, and it runs unharmed (the parent
// exits 3 if the child does not exit 0).
func TestInt3Fork(t *testing.T) {
	for _, follow := range []bool{true, false} {
		name, specs := "follow", []string{"tick:--x"}
		if !follow {
			name, specs = "no-follow", []string{"--no-follow", "tick:--x"}
		}
		t.Run(name, func(t *testing.T) {
			exe := buildFix(t)
			r := watch(t, pages, specs, exe, "fork")
			addr, _ := r.log.watchRange(t, "tick")
			xHits(t, r, addr)
			fx := fixtureX(r.fixture)
			if len(fx) != 6 || threads(fx) != 2 {
				t.Fatalf("fixture logged %v, want 3 calls in the parent and 3 in the child", fx)
			}
			parent := fx[0].TID
			var want, child, got, gotChild []access
			for _, a := range fx {
				if a.TID == parent {
					want = append(want, a)
				} else {
					child = append(child, a)
				}
			}
			for _, h := range xDirs(r.log.hits) {
				if h.TID == parent {
					got = append(got, h)
				} else {
					gotChild = append(gotChild, h)
				}
			}
			compareByThread(t, want, got)
			if follow {
				compareByThread(t, child, gotChild)
			} else if len(gotChild) > 0 {
				t.Errorf("--no-follow: the child's calls were traced: %v", gotChild)
			}
		})
	}
}

// TestInt3Exec: breakpoints go with the image at exec; the new image's
// function is watched again (its own int3), and each image's calls are
// logged.
func TestInt3Exec(t *testing.T) {
	exe := buildFix(t)
	r := watch(t, pages, []string{"tick:--x"}, exe, "reexec", "3")
	fx := fixtureX(r.fixture)
	if len(fx) != 5 {
		t.Fatalf("fixture logged %d calls, want 5 (2 before exec, 3 after)", len(fx))
	}
	var ids []uint32
	for i, h := range r.log.hits {
		if h.Dir == 'X' && (len(ids) == 0 || ids[len(ids)-1] != r.log.ids[i]) {
			ids = append(ids, r.log.ids[i])
		}
	}
	if len(ids) != 2 {
		t.Errorf("X hits under map ids %v, want one id per image", ids)
	}
	// Both images are PIE: addresses differ; compare the sequence.
	got := xDirs(r.log.hits)
	if len(got) != 5 {
		t.Errorf("%d X hits, want 5: %v", len(got), r.log.hits)
	}
	for i := range min(len(got), len(fx)) {
		if got[i].TID != fx[i].TID || got[i].Addr != fx[i].Addr {
			t.Errorf("hit %d: %v, want %v", i, got[i], fx[i])
		}
	}
}

func xDirs(l []access) []access {
	var out []access
	for _, a := range l {
		if a.Dir == 'X' {
			out = append(out, a)
		}
	}
	return out
}

// TestInt3Detach attaches to a program that calls a function every
// millisecond, with an int3 on it, detaches (SIGINT) while it runs, and
// checks that the program's code is its own again, read through
// /proc/PID/mem against the executable, and that it keeps running.
func TestInt3Detach(t *testing.T) {
	exe := buildFix(t, "-no-pie")
	addr, orig := symbolBytes(t, exe, "tick", 16)
	dir := t.TempDir()
	flog := filepath.Join(dir, "fixture.log")
	prog := startFixture(t, exe, flog, "tickloop")
	calls := func() int { return len(fixtureX(readFixtureLogQuiet(flog))) }
	waitFor(t, "fixture start", func() bool { return calls() >= 1 })
	pid := prog.Process.Pid

	tlog := filepath.Join(dir, "trace.log")
	s, _ := attachWatch(t, pid, "tick", "--backend", "pages", "-o", tlog, "tick:--x")
	if b := readMem(t, pid, addr, 1); b[0] != 0xcc {
		t.Errorf("no int3 at tick while watching: %#x", b[0])
	}
	start := calls()
	waitFor(t, "20 traced calls", func() bool { return calls() >= start+21 })
	s.detach(t)
	if got := readMem(t, pid, addr, len(orig)); string(got) != string(orig) {
		t.Errorf("code at tick after detach: % x, want the executable's % x", got, orig)
	}
	b, err := os.ReadFile(tlog)
	if err != nil {
		t.Fatal(err)
	}
	wl := parseWatchLog(t, b)
	if n := len(xDirs(wl.hits)); n < 20 {
		t.Errorf("%d calls traced, want >= 20\n%s", n, s.stderr.String())
	}
	before := calls()
	waitFor(t, "the program to keep calling tick", func() bool { return calls() >= before+20 })
	if err := prog.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("program died after detach: %v", err)
	}
}

// symbolBytes returns a symbol's address in a non-PIE executable and its
// first n bytes from the file.
func symbolBytes(t *testing.T, exe, name string, n int) (uint64, []byte) {
	t.Helper()
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name != name {
			continue
		}
		for _, sec := range f.Sections {
			if s.Value >= sec.Addr && s.Value+uint64(n) <= sec.Addr+sec.Size && sec.Type == elf.SHT_PROGBITS {
				b := make([]byte, n)
				if _, err := sec.ReadAt(b, int64(s.Value-sec.Addr)); err != nil {
					t.Fatal(err)
				}
				return s.Value, b
			}
		}
	}
	t.Fatalf("no symbol %s in %s", name, exe)
	return 0, nil
}

// readMem reads a live process's memory through /proc/PID/mem.
func readMem(t *testing.T, pid int, addr uint64, n int) []byte {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		t.Fatalf("read /proc/%d/mem at %#x: %v", pid, addr, err)
	}
	return b
}
