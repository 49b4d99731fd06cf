package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// oneLine checks that stderr is a single line mentioning want.
func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("stderr = %q, want one line mentioning %q", stderr, want)
	}
}

func TestMissingPID(t *testing.T) {
	pid := 4194303 // the highest pid_max allows; walk down to a free one
	for ; pid > 1; pid-- {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			break
		}
	}
	res := mmiotrace(t, "record", "-o", filepath.Join(t.TempDir(), "log"), "-p", fmt.Sprint(pid))
	if res.code == 0 {
		t.Errorf("exit 0 for a missing pid")
	}
	oneLine(t, res.stderr, fmt.Sprint(pid))
}

func TestCommandNotFound(t *testing.T) {
	for _, cmd := range []string{"/nonexistent/program", "mmiotrace-no-such-command"} {
		res := mmiotrace(t, "record", "-o", filepath.Join(t.TempDir(), "log"), "--", cmd)
		if res.code == 0 {
			t.Errorf("%s: exit 0", cmd)
		}
		oneLine(t, res.stderr, cmd)
	}
}

func TestBadRange(t *testing.T) {
	for _, r := range []string{"foo", "0x1000", "0x1000+0", "0x1000+zz", "0xffffffffffff0000+0x100000"} {
		res := mmiotrace(t, "record", "-o", filepath.Join(t.TempDir(), "log"), "--range", r, "--", "true")
		if res.code != 2 {
			t.Errorf("--range %s: exit %d, want 2", r, res.code)
		}
		oneLine(t, res.stderr, "range")
	}
}

// TestGlobMatchesNothing: a warning, and the program's own exit status.
func TestGlobMatchesNothing(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/misc.c")
	shm := shmName(t)
	res := mmiotrace(t, "record", "-q", "-o", filepath.Join(t.TempDir(), "log"),
		"--map", "/dev/shm/mmiotrace-e2e-matches-nothing-*", "--", bin, "exit", "3", shm)
	if res.code != 3 {
		t.Errorf("exit %d, want the program's 3\nstderr:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "warning") || !strings.Contains(res.stderr, "matches-nothing") {
		t.Errorf("no warning about the glob on stderr:\n%s", res.stderr)
	}
}

// TestExitStatus: the traced program's exit status, or 128+N when signal N
// killed it, becomes mmiotrace's; the accesses before are logged.
func TestExitStatus(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/misc.c")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"exit", "7"}, 7},
		{[]string{"exit", "0"}, 0},
		{[]string{"signal", "10"}, 128 + 10}, // SIGUSR1
		{[]string{"signal", "9"}, 128 + 9},
	} {
		shm := shmName(t)
		log := filepath.Join(t.TempDir(), "log")
		args := append([]string{"record", "-q", "-o", log, "--map", shm, "--", bin}, c.args...)
		res := mmiotrace(t, append(args, shm)...)
		if res.code != c.code {
			t.Errorf("%v: exit %d, want %d\nstderr:\n%s", c.args, res.code, c.code, res.stderr)
		}
		recs := readLog(t, log)
		m := mapOf(t, recs, shm)
		got := traced(t, recs, m.MapID)
		if n := len(got); n != 1 {
			t.Errorf("%v: accesses from %d threads, want 1", c.args, n)
		}
		for _, acc := range got {
			if len(acc) != 1 || acc[0].Dir != 'W' || acc[0].Off != 4 || acc[0].Width != 4 {
				t.Errorf("%v: accesses %v, want one W4 at 0x4", c.args, acc)
			}
		}
	}
}

// TestProgramSegv: the program's own faults (a store to a read-only traced
// mapping, a load from an unmapped address) reach its SIGSEGV handler as
// they would untraced, and the refused store is not logged.
func TestProgramSegv(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/misc.c")
	shm := shmName(t)
	log := filepath.Join(t.TempDir(), "log")
	res := mmiotrace(t, "record", "-q", "-o", log, "--map", shm, "--", bin, "segv", shm)
	if res.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	want := "load 0\nstore to read-only: fault at +12 code 2\nunmapped: fault at 0x10 code 1\nload 0\n"
	if res.stdout != want {
		t.Errorf("program output:\n%s\nwant:\n%s", res.stdout, want)
	}
	recs := readLog(t, log)
	m := mapOf(t, recs, shm)
	for tid, acc := range traced(t, recs, m.MapID) {
		if len(acc) != 2 || acc[0] != (access{'R', 4, 8, "00000000"}) || acc[1] != acc[0] {
			t.Errorf("tid %d: accesses %v, want two R4 at 0x8 (and no store)", tid, acc)
		}
	}
}

// TestRangeAnon traces part of an anonymous mapping by --range in spawn
// mode: only accesses inside the range are logged, with the virtual
// address as phys.
func TestRangeAnon(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/misc.c")
	log := filepath.Join(t.TempDir(), "log")
	res := mmiotrace(t, "record", "-q", "-o", log, "--range", "0x200001000+0x1000", "--", bin, "fixed")
	if res.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	if res.stdout != "11223344 5566778899aabbcc\n" {
		t.Errorf("program output %q", res.stdout)
	}
	recs := readLog(t, log)
	var maps []trace.Record
	for _, r := range recs {
		if r.Kind == trace.KindMap {
			maps = append(maps, r)
		}
	}
	if len(maps) != 1 || maps[0].Phys != 0x200001000 || maps[0].Virt != 0x200001000 || maps[0].Len != 0x1000 {
		t.Fatalf("MAP records %+v, want one of 0x200001000+0x1000", maps)
	}
	want := []access{{'W', 8, 0x200001010, "ccbbaa9988776655"}, {'R', 8, 0x200001010, "ccbbaa9988776655"}}
	got := traced(t, recs, maps[0].MapID)
	if len(got) != 1 {
		t.Fatalf("accesses from %d threads, want 1: %v", len(got), got)
	}
	for _, acc := range got {
		if fmt.Sprint(acc) != fmt.Sprint(want) {
			t.Errorf("accesses %v, want %v", acc, want)
		}
	}
}
