package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/procmaps"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// TestCodeLines checks the CODE lines of a PIE that executes itself, then
// dlopens a library (built without a build id): one line per executable file
// mapping of each image, exactly as the program's own /proc/self/maps shows
// them, in the order they appeared, with the build ids `readelf -n` prints.
func TestCodeLines(t *testing.T) {
	if _, err := exec.LookPath("readelf"); err != nil {
		testenv.Skip(t, "readelf (binutils) not installed")
	}
	prog := testenv.BuildC(t, "testdata/codefix.c", "-fPIE", "-pie", "-ldl")
	lib := testenv.BuildC(t, "testdata/codelib.c", "-shared", "-fPIC", "-Wl,--build-id=none")
	dir := t.TempDir()
	out, log := filepath.Join(dir, "maps"), filepath.Join(dir, "trace.log")
	res := mmiotrace(t, "record", "-q", "-o", log, "--", prog, lib, out, "exec")
	if res.code != 0 {
		t.Fatalf("mmiotrace exit %d\nstderr:\n%s", res.code, res.stderr)
	}
	var got []string
	var pids []int32
	for _, r := range readLog(t, log) {
		if r.Kind == trace.KindCode {
			got = append(got, codeLine(r.Virt, r.Virt+r.Len, r.Phys, r.Text, r.Value[:r.Width]))
			pids = append(pids, r.PID)
		}
	}
	// The first image's lines, then the second's: each image's executable
	// and ld.so at its start, then what the loader maps (libc, the
	// library), in /proc/PID/maps order within each group.
	before, after := execMappings(t, out+".0"), execMappings(t, out)
	want := append(before, after...)
	if !slices.Equal(got, want) {
		t.Errorf("CODE lines:\n  %s\nwant (from the program's /proc/self/maps):\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, p := range pids {
		if p != pids[0] || p <= 0 {
			t.Errorf("CODE pids %v, want the program's pid throughout", pids)
			break
		}
	}
	if !slices.ContainsFunc(after, func(s string) bool { return strings.Contains(s, " - "+lib) }) {
		t.Errorf("no CODE line without a build id for the dlopen'ed %s in\n  %s", lib, strings.Join(after, "\n  "))
	}
}

func codeLine(start, end, off uint64, path string, id []byte) string {
	ids := "-"
	if len(id) > 0 {
		ids = fmt.Sprintf("%x", id)
	}
	return fmt.Sprintf("%#x-%#x %#x %s %s", start, end, off, ids, path)
}

// execMappings renders the executable file mappings of a maps snapshot as
// codeLine does, each with the build id `readelf -n` prints for its file.
// The executable and ld.so come first (they are there at exec), then the
// rest, each group in address order.
func execMappings(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := procmaps.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var first, rest []string
	for _, m := range maps {
		if m.Prot()&procmaps.ProtExec == 0 || m.Anonymous() {
			continue
		}
		line := codeLine(m.Start, m.End, m.Offset, m.Path, readelfBuildID(t, m.Path))
		if strings.Contains(m.Path, "codefix") || strings.Contains(m.Path, "/ld-linux") {
			first = append(first, line)
		} else {
			rest = append(rest, line)
		}
	}
	return append(first, rest...)
}

var buildIDLine = regexp.MustCompile(`Build ID: ([0-9a-f]+)`)

func readelfBuildID(t *testing.T, path string) []byte {
	t.Helper()
	out, err := exec.Command("readelf", "-n", path).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf -n %s: %v\n%s", path, err, out)
	}
	m := buildIDLine.FindSubmatch(out)
	if m == nil {
		return nil
	}
	var id []byte
	fmt.Sscanf(string(m[1]), "%x", &id)
	return id
}
