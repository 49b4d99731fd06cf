package watchtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAttachDetach attaches to a running program with five watches (the
// fifth by page protection), detaches on SIGINT, and checks that the
// program goes on running untraced, with the watched page's protection
// restored.
func TestAttachDetach(t *testing.T) {
	eachBackend(t, testAttachDetach)
}

func testAttachDetach(t *testing.T, b backend) {
	exe := buildFix(t, "-no-pie")
	dir := t.TempDir()
	flog := filepath.Join(dir, "fixture.log")
	prog := startFixture(t, exe, flog, "loop")
	waitFor(t, "fixture start", func() bool { return ticks(flog) >= 1 })

	tlog := filepath.Join(dir, "trace.log")
	s, line := attachWatch(t, prog.Process.Pid, "counter", "--backend", b.name, "-o", tlog, "g8", "g16", "g32", "g64", "counter:-w-")
	if !strings.Contains(line, "page protection") {
		s.detach(t)
		t.Fatalf("counter not placed by page protection: %s", line)
	}
	// At least 50 increments while traced (the fixture logs a tick every
	// 50), however slow the machine.
	start := ticks(flog)
	waitFor(t, "50 traced increments", func() bool { return ticks(flog) >= start+2 })
	s.detach(t)

	// The trace holds consecutive stores to counter.
	text, err := os.ReadFile(tlog)
	if err != nil {
		t.Fatal(err)
	}
	wl := parseWatchLog(t, text)
	addr, _ := wl.watchRange(t, "counter")
	var vals []uint64
	for _, h := range wl.hits {
		if h.Addr != addr || h.Dir != 'W' || h.Width != 8 || h.TID != prog.Process.Pid {
			t.Errorf("unexpected hit %v (counter at %#x)", h, addr)
			continue
		}
		vals = append(vals, h.Value)
	}
	if len(vals) < 50 {
		t.Fatalf("%d stores to counter traced, want >= 50", len(vals))
	}
	for i := 1; i < len(vals); i++ {
		if vals[i] != vals[i-1]+1 {
			t.Fatalf("store %d wrote %#x after %#x: a store was lost or duplicated", i, vals[i], vals[i-1])
		}
	}

	// Untraced, still running, page protection gone.
	status, err := os.ReadFile("/proc/" + strconv.Itoa(prog.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nTracerPid:\t0\n") {
		t.Errorf("still traced after detach:\n%s", status)
	}
	maps, err := os.ReadFile("/proc/" + strconv.Itoa(prog.Process.Pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	page := addr &^ 0xfff
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		z, _ := strconv.ParseUint(hi, 16, 64)
		if page >= a && page < z && f[1] != "rw-p" {
			t.Errorf("watched page %#x left as %s after detach: %s", page, f[1], l)
		}
	}
	before := ticks(flog)
	waitFor(t, "fixture to keep running", func() bool { return ticks(flog) >= before+2 })
	if err := prog.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("program died after detach: %v", err)
	}
}

// ticks returns the last "tick N" count the loop fixture logged.
func ticks(path string) int {
	b, _ := os.ReadFile(path)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "tick "); ok {
			n, _ = strconv.Atoi(v)
		}
	}
	return n / 50
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
