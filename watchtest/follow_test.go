package watchtest

import (
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
