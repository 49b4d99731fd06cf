package watchtest

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestDlopen watches a variable of a library the program loads with dlopen
// after tracing began (LIB:SYMBOL).
func TestDlopen(t *testing.T) {
	eachBackend(t, testDlopen)
}

func testDlopen(t *testing.T, b backend) {
	built := testenv.BuildC(t, "testdata/libwt.c", "-shared", "-fPIC")
	lib := filepath.Join(t.TempDir(), "libwt.so")
	copyFile(t, built, lib)
	exe := buildFix(t)
	r := watch(t, b, []string{"libwt.so:lib_counter"}, exe, "dlopen", lib)
	addr, n := r.log.watchRange(t, "libwt.so:lib_counter")
	if n != 4 {
		t.Errorf("lib_counter: length %d, want 4", n)
	}
	if got, want := servedBy(r.stderr, "libwt.so:lib_counter"), b.data(true); got != want {
		t.Errorf("served by %q, want %s\n%s", got, want, r.stderr)
	}
	want := expected(r.fixture, []span{{addr, n, "RW"}})
	if len(want) != 4 {
		t.Fatalf("fixture made %d accesses to lib_counter at %#x, want 4: %v", len(want), addr, r.fixture)
	}
	// The dynamic loader zeroes the tail of the library's .bss while dlopen
	// maps it: stores of zero the fixture cannot log. Everything after them
	// must match exactly.
	got := r.log.hits
	for len(got) > 0 && got[0].Dir == 'W' && got[0].Value == 0 {
		got = got[1:]
	}
	if len(r.log.hits)-len(got) > 2 {
		t.Errorf("%d zeroing stores before the first set, want at most 2: %v", len(r.log.hits)-len(got), r.log.hits)
	}
	compareByThread(t, want, got)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// runCLI runs the CLI and returns its exit code and stderr.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(cli(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	} else if err != nil {
		t.Fatalf("run mmiotrace: %v", err)
	}
	return 0, stderr.String()
}

// TestUnknownSymbol: a misspelt name is a usage error (exit 2) with a
// suggestion, before the program starts.
func TestUnknownSymbol(t *testing.T) {
	exe := buildFix(t)
	marker := filepath.Join(t.TempDir(), "ran")
	t.Setenv("WT_LOG", marker)
	code, stderr := runCLI(t, "watch", "-o", "-", "countr", "--", exe, "seq")
	if code != 2 {
		t.Errorf("exit %d, want 2\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "did you mean") || !strings.Contains(stderr, "counter") {
		t.Errorf("stderr lacks a did-you-mean line naming counter:\n%s", stderr)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the program ran despite the bad SPEC")
	}
}

// TestStripped: a stripped executable gives a clear error that points to
// raw addresses; a raw address then works.
func TestStripped(t *testing.T) {
	exe := buildFix(t, "-s", "-no-pie")
	code, stderr := runCLI(t, "watch", "-o", "-", "counter", "--", exe, "seq")
	if code != 2 {
		t.Errorf("exit %d, want 2\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "0xADDR") || !strings.Contains(stderr, "symbols") {
		t.Errorf("stderr does not explain the missing symbols and suggest raw addresses:\n%s", stderr)
	}
	// The unstripped twin has the same layout: take counter's address from it.
	plain := buildFix(t, "-no-pie")
	b := backends(t)[0]
	r := watch(t, b, []string{"g64"}, plain, "seq")
	a, n := r.log.watchRange(t, "g64")
	raw := "0x" + strings.TrimPrefix(hex(a), "0x") + "/8"
	r2 := watch(t, b, []string{raw}, exe, "seq")
	got, _ := r2.log.watchRange(t, raw)
	if got != a {
		t.Fatalf("raw watch at %#x, want %#x", got, a)
	}
	compareByThread(t, expected(r2.fixture, []span{{a, n, "RW"}}), r2.log.hits)
}
