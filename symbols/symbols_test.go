package symbols

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

var le = binary.LittleEndian

// TestCExecutable resolves the globals of a running C program, fixed-address
// and PIE, and checks each against the value the program initialised it to,
// read from the process at the resolved address.
func TestCExecutable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		pie   bool
	}{
		{"fixed", []string{"-no-pie", "-fno-toplevel-reorder"}, false},
		{"pie", []string{"-fPIE", "-pie", "-fno-toplevel-reorder"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := testenv.BuildC(t, "testdata/globals.c", tc.flags...)
			tab, err := Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			if tab.PIE() != tc.pie {
				t.Fatalf("PIE() = %v, want %v (ELF type %v)", tab.PIE(), tc.pie, tab.Type)
			}
			p, ready := start(t, bin)
			bias, err := Bias(p.pid, "", tab)
			if err != nil {
				t.Fatal(err)
			}
			if tc.pie == (bias == 0) || bias&pageMask != 0 {
				t.Fatalf("bias %#x for pie=%v", bias, tc.pie)
			}
			get := func(name string) (Symbol, uint64) {
				t.Helper()
				s, err := tab.Lookup(name)
				if err != nil {
					t.Fatal(err)
				}
				return s, s.Addr + bias
			}

			counter, addr := get("counter")
			if want := fmt.Sprintf("ready %#x", addr); ready != want {
				t.Fatalf("program printed %q, resolved %q", ready, want)
			}
			if counter.Kind != Object || counter.Size != 4 || counter.Local || !strings.HasSuffix(counter.File, "globals.c") {
				t.Errorf("counter = %+v", counter)
			}
			if v := le.Uint32(peek(t, p.pid, addr, 4)); v != 0x1234abcd {
				t.Errorf("counter reads %#x", v)
			}
			big, addr := get("big")
			b := peek(t, p.pid, addr, int(big.Size))
			if big.Size != 32 || le.Uint64(b[8:]) != 0x2222 || le.Uint64(b[24:]) != 0x4444 {
				t.Errorf("big %+v reads %x", big, b)
			}
			msg, addr := get("message")
			if s := string(peek(t, p.pid, addr, int(msg.Size))); s != "hello, watcher\x00" {
				t.Errorf("message reads %q", s)
			}
			hidden, addr := get("hidden")
			if !hidden.Local || hidden.File != "globals.c" || le.Uint32(peek(t, p.pid, addr, 4)) != 77 {
				t.Errorf("hidden = %+v", hidden)
			}
			// Only DWARF knows dwsize's size.
			dw, addr := get("dwsize")
			if dw.Size != 24 || le.Uint64(peek(t, p.pid, addr+8, 8)) != 0x5252 {
				t.Errorf("dwsize = %+v", dw)
			}
			// A symbol nobody knows the size of needs /LEN.
			if _, _, _, err := tab.Resolve(Spec{Symbol: "nosize"}); err == nil {
				t.Error("Resolve of a sizeless symbol without /LEN succeeded")
			}
			_, a, n, err := tab.Resolve(Spec{Symbol: "nosize", Len: 8})
			if err != nil || n != 8 || le.Uint64(peek(t, p.pid, a+bias, 8)) != 0x4242424242424242 {
				t.Errorf("nosize/8: %#x %d %v", a, n, err)
			}
			// SYMBOL+OFF/LEN lands inside the array.
			sp, err := ParseSpec("big+8/8:-w-")
			if err != nil {
				t.Fatal(err)
			}
			_, a, n, err = tab.Resolve(sp)
			if err != nil || n != 8 || le.Uint64(peek(t, p.pid, a+bias, 8)) != 0x2222 {
				t.Errorf("big+8/8: %#x %d %v", a, n, err)
			}
			if _, _, _, err := tab.Resolve(Spec{Symbol: "big", Off: 24, Len: 16}); err == nil {
				t.Error("a range past the end of big was accepted")
			}
			// Thread-locals have no single address.
			if tls, _ := get("tlsvar"); tls.Kind != TLS {
				t.Errorf("tlsvar kind %v", tls.Kind)
			}
			if _, _, _, err := tab.Resolve(Spec{Symbol: "tlsvar"}); err == nil {
				t.Error("Resolve of a TLS symbol succeeded")
			}
			// Versioned names from .symtab fold into the plain one.
			if m := tab.Match("stdout*"); len(m) != 1 || m[0].Name != "stdout" || m[0].Size != 8 {
				t.Errorf("Match(stdout*) = %+v", m)
			}
			// PC to function.
			bump, _ := get("bump")
			if f, off, ok := tab.FuncAt(bump.Addr + 2); !ok || f.Name != "bump" || off != 2 || bump.Kind != Func {
				t.Errorf("FuncAt(bump+2) = %v %d %v", f.Name, off, ok)
			}
		})
	}
}

// TestDWARFVariables checks the DWARF reader against the symbol table sizes
// the compiler emitted, variable by variable.
func TestDWARFVariables(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/globals.c", "-no-pie", "-fno-toplevel-reorder")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars, err := dwarfVariables(f)
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	elfSym := map[string]elf.Symbol{}
	for _, s := range syms {
		elfSym[s.Name] = s
	}
	want := map[string]uint64{"counter": 4, "big": 32, "message": 15, "hidden": 4, "dwsize": 24}
	for _, v := range vars {
		w, ok := want[v.name]
		if !ok {
			continue
		}
		delete(want, v.name)
		s := elfSym[v.name]
		if v.size != w || v.addr != s.Value || !strings.HasSuffix(v.file, "globals.c") {
			t.Errorf("DWARF %s: %+v; symtab %#x/%d", v.name, v, s.Value, s.Size)
		}
		if v.name == "dwsize" && s.Size != 0 {
			t.Errorf("fixture precondition: ELF size of dwsize is %d, want 0", s.Size)
		}
	}
	if len(want) != 0 {
		t.Errorf("DWARF missed %v", want)
	}
}

// TestDlopen resolves a library's global from the mapping that appears when
// the program dlopens it, with ResolveInMapping and with Bias.
func TestDlopen(t *testing.T) {
	lib := testenv.BuildC(t, "testdata/lib.c", "-shared", "-fPIC")
	host := testenv.BuildC(t, "testdata/dlhost.c", "-ldl")
	tab, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	if !tab.PIE() {
		t.Fatal("shared library not ET_DYN")
	}
	libval, err := tab.Lookup("libval")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := start(t, host, lib)
	if _, err := Bias(p.pid, lib, tab); err == nil {
		t.Fatal("library found before dlopen")
	}
	before, err := ReadMaps(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	if l := p.line(t); l != "loaded" {
		t.Fatalf("host said %q", l)
	}
	after, err := ReadMaps(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	// The new mappings, as a tracer would see them arrive.
	old := map[uint64]bool{}
	for _, m := range before {
		old[m.Start] = true
	}
	same := sameFile(lib)
	var addr uint64
	var fresh []Mapping
	for _, m := range after {
		if !old[m.Start] && same(m) {
			fresh = append(fresh, m)
		}
	}
	if len(fresh) < 2 || fresh[0].Offset != 0 {
		t.Fatalf("new mappings of %s: %+v", lib, fresh)
	}
	// The offset-0 mapping places the symbol.
	addr, ok := ResolveInMapping(fresh[0].Start, 0, tab, libval)
	if !ok {
		t.Fatalf("offset-0 mapping %+v not recognised", fresh[0])
	}
	// Every other mapping agrees or admits ambiguity, never gives another
	// answer; the executable and the writable ones are never ambiguous.
	for _, m := range fresh {
		b, ok := tab.BiasOf(m)
		if (ok && libval.Addr+b != addr) || (!ok && m.Perms != "r--p") {
			t.Errorf("BiasOf(%+v) = %#x, %v; want %#x", m, b, ok, addr-libval.Addr)
		}
		if a, ok := ResolveInMapping(m.Start, m.Offset, tab, libval); ok && a != addr {
			t.Errorf("ResolveInMapping(%+v) = %#x, want %#x", m, a, addr)
		}
	}
	if v := le.Uint64(peek(t, p.pid, addr, 8)); v != 0x5eed1234cafe {
		t.Fatalf("libval at %#x reads %#x", addr, v)
	}
	bias, err := Bias(p.pid, lib, tab)
	if err != nil || libval.Addr+bias != addr {
		t.Fatalf("Bias = %#x, %v; ResolveInMapping gave %#x", bias, err, addr)
	}
	arr, _ := tab.Lookup("libarr")
	if v := le.Uint32(peek(t, p.pid, arr.Addr+bias+4, 4)); v != 8 || arr.Size != 12 {
		t.Fatalf("libarr[1] = %d, size %d", v, arr.Size)
	}
	if _, ok := ResolveInMapping(addr, 0x123000, tab, libval); ok {
		t.Fatal("a mapping at an offset no segment has was accepted")
	}

	// The whole process: the executable first, the library among the rest.
	imgs, err := Images(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if !sameFile(host)(Mapping{Inode: 1, Path: imgs[0].Path}) {
		t.Errorf("first image %s, want the executable %s", imgs[0].Path, host)
	}
	for _, in := range []string{"libval:-w-", filepath.Base(lib) + ":libval/8"} {
		sp, err := ParseSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		tg, err := ResolveSpec(imgs, sp)
		if err != nil || tg.Addr != addr || tg.Len != 8 || !same(Mapping{Inode: 1, Path: tg.Image.Path}) {
			t.Errorf("ResolveSpec(%s) = %+v, %v; want %#x/8 in %s", in, tg, err, addr, lib)
		}
	}
	if _, err := ResolveSpec(imgs, Spec{Symbol: "libvall"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("ResolveSpec(libvall): %v", err)
	}
	if _, err := ResolveSpec(imgs, Spec{Lib: "no-such-lib", Symbol: "libval"}); err == nil {
		t.Error("ResolveSpec with an unknown library succeeded")
	}
	if tg, err := ResolveSpec(imgs, Spec{Addr: addr, Len: 8}); err != nil || tg.Addr != addr || tg.Image != nil {
		t.Errorf("raw address: %+v, %v", tg, err)
	}
}

// TestGoBinary resolves package variables of a running Go program, built
// both as a fixed-address and as a PIE executable.
func TestGoBinary(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		pie  bool
	}{
		{"exe", nil, false},
		{"pie", []string{"-buildmode=pie"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := testenv.BuildGo(t, "./testdata/goprog", tc.args...)
			tab, err := Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			if tab.PIE() != tc.pie {
				t.Fatalf("PIE() = %v", tab.PIE())
			}
			for _, name := range []string{"runtime.mheap_", "runtime.main", "main.main"} {
				if s, err := tab.Lookup(name); err != nil || s.Size == 0 {
					t.Errorf("%s: %+v %v", name, s, err)
				}
			}
			p, _ := start(t, bin)
			bias, err := Bias(p.pid, "", tab)
			if err != nil || tc.pie == (bias == 0) {
				t.Fatalf("bias %#x, %v", bias, err)
			}
			c, err := tab.Lookup("main.counter")
			if err != nil || c.Kind != Object || c.Size != 8 {
				t.Fatalf("main.counter = %+v, %v", c, err)
			}
			if v := le.Uint64(peek(t, p.pid, c.Addr+bias, 8)); v != 0xfeedface12345678 {
				t.Errorf("main.counter reads %#x", v)
			}
			tb, err := tab.Lookup("main.table")
			if err != nil || tb.Size != 16 {
				t.Fatalf("main.table = %+v, %v", tb, err)
			}
			if v := le.Uint32(peek(t, p.pid, tb.Addr+bias+12, 4)); v != 0xd4 {
				t.Errorf("main.table[3] reads %#x", v)
			}
			if m := tab.Match("main.*"); len(m) < 3 {
				t.Errorf("Match(main.*) = %d symbols", len(m))
			}
		})
	}
}

func TestLookupErrors(t *testing.T) {
	tab := synthetic()
	_, err := tab.Lookup("countr")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "did you mean counter") {
		t.Errorf("Lookup(countr): %v", err)
	}
	_, err = tab.Lookup("count")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "counter") || !strings.Contains(err.Error(), "main.counter") {
		t.Errorf("Lookup(count): %v", err)
	}
	_, err = tab.Lookup("zzzzzzzzzzzz")
	if !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("Lookup(zzz): %v", err)
	}
	// Two statics: ambiguous, naming both files.
	_, err = tab.Lookup("state")
	if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "a.c") || !strings.Contains(err.Error(), "b.c") {
		t.Errorf("Lookup(state): %v", err)
	}
	// A static and a global: the global wins.
	if s, err := tab.Lookup("flag"); err != nil || s.Addr != 0x3000 {
		t.Errorf("Lookup(flag) = %+v, %v", s, err)
	}
	// At most five suggestions.
	_, err = tab.Lookup("v")
	if n := strings.Count(err.Error(), ","); n > 4 {
		t.Errorf("too many suggestions: %v", err)
	}
}

func TestMatch(t *testing.T) {
	tab := synthetic()
	names := func(ss []Symbol) string {
		var n []string
		for _, s := range ss {
			n = append(n, s.Name)
		}
		return strings.Join(n, " ")
	}
	for pat, want := range map[string]string{
		"counter":           "counter main.counter",
		"*counter":          "counter main.counter",
		"main.*":            "main.counter",
		"github.com/*.Var":  "github.com/x/y.Var",
		"*.Var":             "github.com/x/y.Var",
		"v[12]":             "v1 v2",
		"nothing-like-this": "",
	} {
		if got := names(tab.Match(pat)); got != want {
			t.Errorf("Match(%q) = %q, want %q", pat, got, want)
		}
	}
	if len(tab.Match("")) != len(tab.Symbols()) {
		t.Error("empty pattern must match everything")
	}
}

func TestList(t *testing.T) {
	var b strings.Builder
	if n, err := List(&b, synthetic(), 0x10000, "counter"); err != nil || n != 2 {
		t.Fatalf("List: %d, %v; want 2 symbols", n, err)
	}
	want := "" +
		"ADDRESS           SIZE  KIND    NAME          FILE\n" +
		"0000000000011000  4     object  counter       \n" +
		"0000000000011100  8     object  main.counter  \n"
	if b.String() != want {
		t.Errorf("List:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	List(&b, synthetic(), 0x10000, "tls")
	if !strings.Contains(b.String(), "tls+0x10  4     tls") {
		t.Errorf("TLS listing:\n%s", b.String())
	}
}

// synthetic builds a table by hand, for the cases fixtures cannot produce
// cheaply.
func synthetic() *Table {
	t := &Table{Path: "synthetic", Type: elf.ET_EXEC, byName: map[string][]int{}}
	for _, s := range []Symbol{
		{Name: "counter", Addr: 0x1000, Size: 4, Kind: Object},
		{Name: "main.counter", Addr: 0x1100, Size: 8, Kind: Object},
		{Name: "state", Addr: 0x2000, Size: 4, Kind: Object, Local: true, File: "a.c"},
		{Name: "state", Addr: 0x2010, Size: 4, Kind: Object, Local: true, File: "b.c"},
		{Name: "flag", Addr: 0x2020, Size: 1, Kind: Object, Local: true, File: "a.c"},
		{Name: "flag", Addr: 0x3000, Size: 1, Kind: Object},
		{Name: "github.com/x/y.Var", Addr: 0x3100, Size: 8, Kind: Object},
		{Name: "tlsthing", Addr: 0x10, Size: 4, Kind: TLS},
		{Name: "v1", Addr: 0x4000, Size: 1, Kind: Object},
		{Name: "v2", Addr: 0x4001, Size: 1, Kind: Object},
		{Name: "v3", Addr: 0x4002, Size: 1, Kind: Object},
		{Name: "v4", Addr: 0x4003, Size: 1, Kind: Object},
		{Name: "v5", Addr: 0x4004, Size: 1, Kind: Object},
		{Name: "v6", Addr: 0x4005, Size: 1, Kind: Object},
		{Name: "v7", Addr: 0x4006, Size: 1, Kind: Object},
	} {
		t.syms = append(t.syms, s)
	}
	// Address order, as Open leaves it.
	for i := 1; i < len(t.syms); i++ {
		for j := i; j > 0 && t.syms[j].Addr < t.syms[j-1].Addr; j-- {
			t.syms[j], t.syms[j-1] = t.syms[j-1], t.syms[j]
		}
	}
	for i, s := range t.syms {
		t.byName[s.Name] = append(t.byName[s.Name], i)
	}
	return t
}
