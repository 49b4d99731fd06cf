package symbols

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestBuildID compares BuildID with `readelf -n` on files nobody here
// wrote (the system's ls, libc and ld.so), on a fixture linked without a
// build id, and on a file that is not ELF.
func TestBuildID(t *testing.T) {
	if _, err := exec.LookPath("readelf"); err != nil {
		testenv.Skip(t, "readelf (binutils) not installed")
	}
	noID := filepath.Join(t.TempDir(), "noid")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-Wl,--build-id=none", "-o", noID, "-x", "c", "/dev/null").CombinedOutput(); err != nil {
		testenv.Skip(t, "gcc cannot link a library: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`Build ID: ([0-9a-f]+)`)
	files := []string{"/bin/ls", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2", noID}
	for _, name := range files {
		out, err := exec.Command("readelf", "-n", name).CombinedOutput()
		if err != nil {
			t.Fatalf("readelf -n %s: %v\n%s", name, err, out)
		}
		want := ""
		if m := re.FindSubmatch(out); m != nil {
			want = string(m[1])
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		id, err := BuildID(f)
		f.Close()
		switch {
		case want == "" && !errors.Is(err, ErrNoBuildID):
			t.Errorf("%s: BuildID %x, %v; want ErrNoBuildID", name, id, err)
		case want != "" && (err != nil || fmt.Sprintf("%x", id) != want):
			t.Errorf("%s: BuildID %x, %v; want %s", name, id, err, want)
		}
	}
	f, err := os.Open("buildid.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := BuildID(f); err == nil || errors.Is(err, ErrNoBuildID) {
		t.Errorf("BuildID of a Go source file: %v, want a not-ELF error", err)
	}
}
