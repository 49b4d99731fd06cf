package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestDevice traces the simulated device: every access kind, made with
// inline asm, by two driver threads, while a device thread answers their
// doorbells through the file descriptor. The trace must hold exactly the
// accesses each thread logged, in order, with direction, width, offset and
// value.
//
// It runs twice: with optimized probes (the default: each instruction is
// patched after its first trap, and its accesses go through the detour
// from then on), and with --no-optimize (every access traps).
func TestDevice(t *testing.T) {
	for _, mode := range []string{"optimized", "trap"} {
		t.Run(mode, func(t *testing.T) { testDevice(t, mode == "optimized") })
	}
}

func testDevice(t *testing.T, optimized bool) {
	bin := testenv.BuildC(t, "testdata/device.c", "-pthread")
	dir := t.TempDir()
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")

	args := []string{"record", "--map", shm, "-o", tlog}
	if !optimized {
		args = append(args, "--no-optimize")
	}
	res := mmiotrace(t, append(args, "--", bin, flog, shm)...)
	if res.code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	recs := readLog(t, tlog)
	m := mapOf(t, recs, shm)
	if m.Phys != 0 || m.Len != 0x4000 {
		t.Errorf("MAP phys %#x len %#x, want 0 and 0x4000", m.Phys, m.Len)
	}
	want := fixtureLog(t, flog)
	if len(want) != 2 {
		t.Errorf("fixture log has %d threads, want 2 drivers", len(want))
	}
	compareThreads(t, want, traced(t, recs, m.MapID))
	kernelWidthsOnly(t, tlog)

	// bsf on memory (and bsr across a page boundary) are not emulated: the
	// stepping path must have run for them. (setz and shl on memory are
	// emulated since internal/x86 covers setcc and shifts.)
	sm := regexp.MustCompile(`(\d+) emulated, (\d+) single-stepped`).FindStringSubmatch(res.stderr)
	if sm == nil {
		t.Fatalf("no summary on stderr:\n%s", res.stderr)
	}
	if n := atoi(sm[2]); n != 2 {
		t.Errorf("%s single-stepped, want 2 (bsf, bsr)", sm[2])
	}
	switch s := parseOpt(t, res.stderr); {
	case optimized && (s.sites < 10 || s.detoured < 100):
		t.Errorf("optimized probes: %+v, want most accesses through them\n%s", s, res.stderr)
	case !optimized && s.sites != 0:
		t.Errorf("--no-optimize, yet %d sites patched", s.sites)
	}
}

// TestDeviceUnprivileged is TestDevice run as an unprivileged user (nobody)
// who owns the device file: /proc/PID/map_files cannot be opened without
// CAP_SYS_ADMIN, so the tracer maps the file by its path, after checking
// it is the very file mapped (device and inode). Exact, and the program
// runs to its end.
func TestDeviceUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Skip(t, "needs root to run mmiotrace as another user")
	}
	bin := testenv.BuildC(t, "testdata/device.c", "-pthread")
	dir, err := os.MkdirTemp("", "mmiotrace-nobody-") // t.TempDir's parent is root's alone
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	shm := shmName(t)
	flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
	res := mmiotraceAs(t, &syscall.Credential{Uid: nobody, Gid: nobody}, "record", "--map", shm, "-o", tlog, "--", bin, flog, shm)
	if res.code != 0 {
		t.Fatalf("mmiotrace as nobody: exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	if strings.Contains(res.stderr, "warning") {
		t.Errorf("warnings as nobody:\n%s", res.stderr)
	}
	recs := readLog(t, tlog)
	m := mapOf(t, recs, shm)
	compareThreads(t, fixtureLog(t, flog), traced(t, recs, m.MapID))
}

// TestUnlinkedUnprivileged: as nobody, a shared mapping of a file deleted
// since has no alias (no map_files, no path): it is not traced, a warning
// says why, and the program runs as it would untraced.
func TestUnlinkedUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Skip(t, "needs root to run mmiotrace as another user")
	}
	bin := testenv.BuildC(t, "testdata/misc.c")
	shm := shmName(t)
	res := mmiotraceAs(t, &syscall.Credential{Uid: nobody, Gid: nobody}, "record", "-q", "--map", shm, "-o", "/dev/null", "--", bin, "unlinked", shm)
	if res.code != 0 || res.stdout != "value 0x5eed\n" {
		t.Fatalf("exit %d, stdout %q; want 0 and the program's value\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "not tracing "+shm) || !strings.Contains(res.stderr, "deleted") {
		t.Errorf("no warning saying why %s is not traced:\n%s", shm, res.stderr)
	}
}

const nobody = 65534

// kernelWidthsOnly checks the log's text as a kernel-format reader sees it:
// every R and W line has a width of 1, 2, 4 or 8, and the vector moves the
// fixture makes are RV and WV lines of 16 bytes and more.
func kernelWidthsOnly(t *testing.T, log string) {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	vec := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "R", "W":
			if w := f[1]; w != "1" && w != "2" && w != "4" && w != "8" {
				t.Errorf("kernel-format line of width %s: %s", w, line)
			}
		case "RV", "WV":
			vec[f[0]+" "+f[1]]++
		}
	}
	if vec["RV 16"] == 0 || vec["WV 16"] == 0 {
		t.Errorf("RV/WV lines %v, want 16-byte loads and stores at least", vec)
	}
}
