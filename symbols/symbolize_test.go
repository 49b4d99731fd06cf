package symbols

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// codeOf returns the Code of f's executable segment as a process would map
// it at load bias bias, as a CODE line records it.
func codeOf(t *testing.T, path string, bias uint64, pid int) Code {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			start := (p.Vaddr + bias) &^ pageMask
			end := (p.Vaddr + bias + p.Memsz + pageMask) &^ pageMask
			id, err := BuildID(mustOpen(t, path))
			if err != nil {
				t.Fatal(err)
			}
			return Code{PID: pid, Start: start, End: end, Offset: p.Off &^ pageMask, BuildID: id, Path: path}
		}
	}
	t.Fatalf("%s has no executable segment", path)
	return Code{}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSymbolize names PCs of a PIE fixture mapped at a load bias: function
// and offset from the symbol table, file and line from DWARF, both checked
// against binutils' addr2line on the same link-time addresses.
func TestSymbolize(t *testing.T) {
	if _, err := exec.LookPath("addr2line"); err != nil {
		testenv.Skip(t, "addr2line (binutils) not installed")
	}
	bin := testenv.BuildC(t, "testdata/globals.c", "-pie", "-fPIE")
	tab, err := Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	const bias = 0x555555554000
	s := NewSymbolizer()
	s.Add(codeOf(t, bin, bias, 42))
	for _, fn := range []string{"main", "bump"} {
		sym, err := tab.Lookup(fn)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range []uint64{0, 4, sym.Size - 1} {
			link := sym.Addr + off
			out, err := exec.Command("addr2line", "-f", "-e", bin, fmt.Sprintf("%#x", link)).Output()
			if err != nil {
				t.Fatalf("addr2line: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			wantFunc := lines[0]
			file, line, _ := strings.Cut(lines[1], ":")
			line, _, _ = strings.Cut(line, " ") // "(discriminator N)"
			want := fmt.Sprintf("%s+%#x (%s:%s)", wantFunc, off, filepath.Base(file), line)

			l := s.Lookup(42, bias+link)
			if got := fmt.Sprintf("%s (%s)", l.Name(), l.SourceLine()); got != want || l.Problem != "" {
				t.Errorf("pc %s+%#x: %s (problem %q), addr2line says %s", fn, off, got, l.Problem, want)
			}
		}
	}
	// Outside every mapping: nothing to say.
	if l := s.Lookup(42, 0x1000); l.Name() != "" || l.Path != "" {
		t.Errorf("pc 0x1000: %+v", l)
	}
}

// TestSymbolizeProblems checks the files that cannot be used: gone, and
// rebuilt (another build id); a PC in them is named by file and offset.
func TestSymbolizeProblems(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/globals.c", "-pie", "-fPIE")
	c := codeOf(t, bin, 0x7f0000000000, 1)
	other := testenv.BuildC(t, "testdata/lib.c", "-shared", "-fPIC")
	gone := c
	gone.Path = filepath.Join(t.TempDir(), "gone")
	gone.Start, gone.End = 0x10000, 0x20000
	rebuilt := c
	rebuilt.Path = other // another file with another build id
	rebuilt.Start, rebuilt.End = 0x30000, 0x40000
	s := NewSymbolizer()
	for _, x := range []Code{c, gone, rebuilt} {
		s.Add(x)
	}
	for _, tc := range []struct {
		pc            uint64
		name, problem string
	}{
		{0x10010, "gone+0x" + fmt.Sprintf("%x", c.Offset+0x10), "not found"},
		{0x30020, filepath.Base(other) + "+0x" + fmt.Sprintf("%x", c.Offset+0x20), "build id differs (rebuilt since)"},
	} {
		l := s.Lookup(0, tc.pc)
		if l.Name() != tc.name || l.Problem != tc.problem {
			t.Errorf("pc %#x: name %q problem %q, want %q and %q", tc.pc, l.Name(), l.Problem, tc.name, tc.problem)
		}
	}
}

// TestSymbolizeProcesses checks that a process's own mapping wins over
// another process's at the same address, and that a later mapping replaces
// an earlier one it overlaps.
func TestSymbolizeProcesses(t *testing.T) {
	a := Code{PID: 1, Start: 0x1000, End: 0x2000, Path: "/nonexistent/a"}
	b := Code{PID: 2, Start: 0x1000, End: 0x2000, Path: "/nonexistent/b"}
	c := Code{PID: 1, Start: 0x1000, End: 0x3000, Offset: 0x5000, Path: "/nonexistent/c"}
	s := NewSymbolizer()
	s.Add(a)
	s.Add(b)
	for _, tc := range []struct {
		pid  int
		want string
	}{{1, "a+0x10"}, {2, "b+0x10"}, {0, "b+0x10"}, {3, "b+0x10"}} {
		if got := s.Lookup(tc.pid, 0x1010).Name(); got != tc.want {
			t.Errorf("pid %d: %s, want %s", tc.pid, got, tc.want)
		}
	}
	s.Add(c)
	if got := s.Lookup(1, 0x1010).Name(); got != "c+0x5010" {
		t.Errorf("after a new mapping over it: %s, want c+0x5010", got)
	}
}
