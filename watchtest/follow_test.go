package watchtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestForkingServer: the workers a server forks keep its image, and its
// watches: every hit on counter, from every process, is logged under a
// watch id of the process's own.
func TestForkingServer(t *testing.T) {
	eachBackend(t, testForkingServer)
}

func testForkingServer(t *testing.T, b backend) {
	exe := testenv.BuildC(t, "testdata/tree.c")
	r := watch(t, b, []string{"shared/8"}, exe, "server", "4")
	if got, want := servedBy(r.stderr, "shared/8"), b.data(true); got != want {
		t.Fatalf("counter served by %q, want %s\n%s", got, want, r.stderr)
	}
	compareByThread(t, r.fixture, r.log.hits)
	if n := threads(r.fixture); n != 5 {
		t.Errorf("accesses from %d processes, want 5", n)
	}
	// Each process's hits are under its own watch of counter.
	idOf := map[int]uint32{}
	for i, h := range r.log.hits {
		id := r.log.ids[i]
		if r.log.names[id] != "shared/8" {
			t.Fatalf("hit %v under map %d (%s)", h, id, r.log.names[id])
		}
		if prev, ok := idOf[h.TID]; ok && prev != id {
			t.Errorf("process %d has hits under watches %d and %d", h.TID, prev, id)
		}
		idOf[h.TID] = id
		if m := r.log.maps[id]; int(m.TID) != h.TID {
			t.Errorf("hit %v under watch %d, placed for process %d", h, id, m.TID)
		}
	}
}

// TestExecOtherProgram: children that execute a program without the watched
// symbol are reported once, not an error; a child that executes the
// fixture again is watched there.
func TestExecOtherProgram(t *testing.T) {
	eachBackend(t, testExecOtherProgram)
}

func testExecOtherProgram(t *testing.T, b backend) {
	exe := testenv.BuildC(t, "testdata/tree.c")
	r := watch(t, b, []string{"shared/8"}, exe, "exec")
	compareByThread(t, r.fixture, r.log.hits)
	if n := threads(r.fixture); n != 2 {
		t.Errorf("accesses from %d processes, want 2", n)
	}
	if n := strings.Count(r.stderr, "watch shared/8: not in "); n != 1 {
		t.Errorf("shared/8 reported %d times as missing, want once\n%s", n, r.stderr)
	}
}

// TestWatchWriteBuffer watches a global whose page holds a buffer the
// program hands to write(2) and read(2): the program's output must be the
// untraced run's, every hit on the global must be logged, and the kernel's
// accesses to the page outside the watch are not.
func TestWatchWriteBuffer(t *testing.T) {
	eachBackend(t, testWatchWriteBuffer)
}

func testWatchWriteBuffer(t *testing.T, b backend) {
	exe := testenv.BuildC(t, "testdata/tree.c")
	want, err := exec.Command(exe, "write").Output()
	if err != nil {
		t.Fatalf("untraced: %v", err)
	}
	dir := t.TempDir()
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
	cmd := exec.Command(cli(t), "watch", "--backend", b.name, "-o", tlog, "shared/8", "--", exe, "write")
	cmd.Env = append(os.Environ(), "WT_LOG="+flog)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, stderr.String())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output traced:\n%s\nuntraced:\n%s", got, want)
	}
	log, err := os.ReadFile(tlog)
	if err != nil {
		t.Fatal(err)
	}
	wl := parseWatchLog(t, log)
	compareByThread(t, readFixtureLog(t, flog), wl.hits)
	if n := len(wl.hits); n != 15 {
		t.Errorf("%d hits, want 15 (3 rounds of 2 increments and a read)", n)
	}
	// The kernel read and wrote the buffer, on the watched page, but not
	// the watched word.
	if bytes.Contains(log, []byte("\nSYS ")) {
		t.Errorf("SYS records for accesses outside the watch:\n%s", log)
	}
}
