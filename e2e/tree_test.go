package e2e

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// treeLog reads the log of testdata/tree.c: "PID TID R|W WIDTH OFFSET
// BYTES" lines. It returns the accesses by thread and each thread's process.
func treeLog(t *testing.T, name string) (map[int][]access, map[int]int) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatalf("open fixture log: %v", err)
	}
	defer f.Close()
	acc, pidOf := map[int][]access{}, map[int]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pid, tid, width int
		var dir, val string
		var off uint64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %s %d %x %s", &pid, &tid, &dir, &width, &off, &val); err != nil || len(dir) != 1 {
			t.Fatalf("fixture log line %q: %v", sc.Text(), err)
		}
		acc[tid] = append(acc[tid], access{dir[0], width, off, val})
		pidOf[tid] = pid
	}
	return acc, pidOf
}

// tracedPath groups the R and W records of every map named path by
// thread, and returns the MAP record of each map id.
func tracedPath(t *testing.T, recs []trace.Record, path string) (map[int][]access, map[uint32]trace.Record, map[int][]uint32) {
	t.Helper()
	named, maps := map[uint32]bool{}, map[uint32]trace.Record{}
	for _, r := range recs {
		switch r.Kind {
		case trace.KindName:
			named[r.MapID] = r.Text == path
		case trace.KindMap:
			maps[r.MapID] = r
		}
	}
	out, ids := map[int][]access{}, map[int][]uint32{}
	for _, r := range recs {
		switch r.Kind {
		case trace.KindUnknown:
			t.Errorf("UNKNOWN record at %#x pc %#x tid %d", r.Phys, r.PC, r.TID)
		case trace.KindRead, trace.KindWrite:
			if !named[r.MapID] {
				continue
			}
			d := byte('R')
			if r.Kind == trace.KindWrite {
				d = 'W'
			}
			out[int(r.TID)] = append(out[int(r.TID)], access{d, int(r.Width), r.Phys, hex.EncodeToString(r.Value[:r.Width])})
			ids[int(r.TID)] = append(ids[int(r.TID)], r.MapID)
		}
	}
	return out, maps, ids
}

// TestFollow runs process trees under `record` and compares every thread's
// accesses, in every process, with what the fixture did: each process's
// maps have ids of their own, made for that process, and each process has a
// PROC line.
func TestFollow(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/tree.c", "-pthread")
	for _, c := range []struct {
		name  string
		argv  func(log, shm string) []string
		procs int // processes traced
		pids  int // processes that made accesses
	}{
		{"sh", func(log, shm string) []string {
			return []string{"sh", "-c", bin + " driver " + log + " " + shm + "; true"}
		}, 2, 1},
		{"fork", func(log, shm string) []string { return []string{bin, "fork", log, shm} }, 2, 2},
		{"vfork", func(log, shm string) []string { return []string{bin, "vfork", log, shm} }, 2, 2},
		{"posix_spawn", func(log, shm string) []string { return []string{bin, "spawn", log, shm} }, 2, 2},
		{"grandchild", func(log, shm string) []string { return []string{bin, "grand", log, shm} }, 3, 2},
		{"exec chain", func(log, shm string) []string { return []string{bin, "chain", log, shm, "3"} }, 1, 1},
		{"forking server", func(log, shm string) []string { return []string{bin, "server", log, shm} }, 5, 4},
		{"fork beside a busy thread", func(log, shm string) []string { return []string{bin, "mtfork", log, shm} }, 4, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			shm := shmName(t)
			flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
			res := mmiotrace(t, append([]string{"record", "--map", shm, "-o", tlog, "--"}, c.argv(flog, shm)...)...)
			if res.code != 0 {
				t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
			}
			want, pidOf := treeLog(t, flog)
			recs := readLog(t, tlog)
			got, maps, ids := tracedPath(t, recs, shm)
			compareThreads(t, want, got)
			pids := map[int]bool{}
			for tid, l := range ids {
				pid := pidOf[tid]
				pids[pid] = true
				for i, id := range l {
					if m := maps[id]; int(m.TID) != pid {
						t.Errorf("thread %d of process %d: access %d logged under map %d, made for process %d", tid, pid, i, id, m.TID)
						break
					}
				}
			}
			if len(pids) != c.pids {
				t.Errorf("accesses from %d processes, want %d", len(pids), c.pids)
			}
			procLines := map[int]bool{}
			for _, r := range recs {
				if r.Kind == trace.KindProc {
					procLines[int(r.PID)] = true
				}
			}
			for pid := range pids {
				if !procLines[pid] {
					t.Errorf("no PROC line for process %d", pid)
				}
			}
			if len(procLines) != c.procs {
				t.Errorf("PROC lines for %d processes, want %d", len(procLines), c.procs)
			}
			sm := regexp.MustCompile(`of (\d+) process`).FindStringSubmatch(res.stderr)
			if sm == nil || atoi(sm[1]) != c.procs {
				t.Errorf("summary does not count %d processes:\n%s", c.procs, res.stderr)
			}
			if c.name == "exec chain" && len(maps) != 4 {
				t.Errorf("%d maps, want 4 (one per image)", len(maps))
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", strings.TrimSpace(res.stderr))
			}
		})
	}
}

// TestFollowAttach attaches to a server, which then forks two workers: they
// are traced; after a detach every process of the tree is untraced, with its
// pages as it mapped them, and runs on.
func TestFollowAttach(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/tree.c", "-pthread")
	dir := t.TempDir()
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
	w := startProgram(t, bin, "serve", flog, shm)
	s := startSession(t, "record", "-q", "-o", tlog, "--map", shm, "-p", strconv.Itoa(w.pid))
	waitFor(t, "attach", func() bool { return allTraced(t, w.pid, s.cmd.Process.Pid) })
	waitFor(t, "armed pages", func() bool {
		p := perms(t, w.pid, w.addr, 0x2000)
		return len(p) > 0 && p[0][:3] == "---"
	})
	var workers []int
	for i := 0; i < 2; i++ {
		workers = append(workers, atoi(w.call("fork")))
	}
	// Each worker makes 28 accesses, then waits.
	waitFor(t, "the workers' accesses", func() bool {
		acc, _ := treeLog(t, flog)
		return len(acc) == 2 && len(acc[workers[0]]) == 28 && len(acc[workers[1]]) == 28
	})
	for _, pid := range workers {
		if !allTraced(t, pid, s.cmd.Process.Pid) {
			t.Errorf("worker %d is not traced", pid)
		}
		if p := perms(t, pid, w.addr, 0x2000); len(p) != 1 || p[0] != "---s" {
			t.Errorf("worker %d's pages are %v while traced, want [---s]", pid, p)
		}
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	if code := s.wait(t); code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", code, s.stderr.String())
	}
	for _, pid := range append([]int{w.pid}, workers...) {
		for tid, tp := range tracerPids(t, pid) {
			if tp != 0 {
				t.Errorf("process %d thread %d still traced by %d after detach", pid, tid, tp)
			}
		}
		if p := perms(t, pid, w.addr, 0x2000); len(p) != 1 || p[0] != "rw-s" {
			t.Errorf("process %d's pages are %v after detach, want [rw-s]", pid, p)
		}
	}
	want, _ := treeLog(t, flog)
	if ans := w.call("go 2"); ans != "done" { // the workers run on, untraced, and exit
		t.Fatalf("go: %s", ans)
	}
	fmt.Fprintln(w.in, "quit")
	if err := <-w.done; err != nil {
		t.Errorf("server: %v", err)
	}
	w.done <- nil
	recs := readLog(t, tlog)
	got, _, _ := tracedPath(t, recs, shm)
	compareThreads(t, want, got)
	after, _ := treeLog(t, flog)
	for _, pid := range workers {
		if len(after[pid]) != 56 {
			t.Errorf("worker %d made %d accesses, want 56", pid, len(after[pid]))
		}
	}
}
