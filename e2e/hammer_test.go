package e2e

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestHammer runs 8 threads making 2000 accesses each to the same two
// pages, interleaved in the same cache lines, with a lock xadd counter they
// all share: the trace must hold exactly each thread's accesses, in order,
// none missing and none extra, and the counter must be exact.
//
// It runs with optimized probes (the default) and with --no-optimize.
func TestHammer(t *testing.T) {
	for _, mode := range []string{"optimized", "trap"} {
		t.Run(mode, func(t *testing.T) { testHammer(t, mode == "optimized") })
	}
}

func testHammer(t *testing.T, optimized bool) {
	const threads, accesses = 8, 2000
	bin := testenv.BuildC(t, "testdata/hammer.c", "-pthread")
	dir := t.TempDir()
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")

	args := []string{"record", "--map", shm, "-o", tlog}
	if !optimized {
		args = append(args, "--no-optimize")
	}
	res := mmiotrace(t, append(args, "--", bin, flog, shm, strconv.Itoa(threads), strconv.Itoa(accesses))...)
	if res.code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	recs := readLog(t, tlog)
	m := mapOf(t, recs, shm)
	want := fixtureLog(t, flog)
	if len(want) != threads {
		t.Fatalf("fixture log has %d threads, want %d", len(want), threads)
	}
	total := 0
	for _, w := range want {
		total += len(w)
		if len(w) < accesses {
			t.Errorf("a thread logged %d accesses, want at least %d", len(w), accesses)
		}
	}
	got := traced(t, recs, m.MapID)
	n := 0
	for _, g := range got {
		n += len(g)
	}
	if n != total {
		t.Errorf("trace has %d accesses, the threads made %d", n, total)
	}
	compareThreads(t, want, got)
	switch s := parseOpt(t, res.stderr); {
	case optimized && s.detoured < total/2:
		t.Errorf("%d of %d accesses through optimized probes, want most\n%s", s.detoured, total, res.stderr)
	case !optimized && s.sites != 0:
		t.Errorf("--no-optimize, yet %d sites patched", s.sites)
	}
}
