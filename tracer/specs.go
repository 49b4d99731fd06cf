package tracer

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mmiotrace/mmiotrace/hwbp"
	"github.com/mmiotrace/mmiotrace/symbols"
)

// NewSpecResolver returns a resolver for specs, named in the log by names
// (the SPECs as the user wrote them, without their mode).
func NewSpecResolver(specs []symbols.Spec, names []string) *SpecResolver {
	return &SpecResolver{specs: specs, names: names, tables: map[string]*symbols.Table{}, placed: map[int]bool{}, warned: map[string]bool{}}
}

// CheckSpec rejects a SPEC that no watch can serve.
func CheckSpec(sp symbols.Spec) error {
	if sp.Symbol == "" && sp.Len == 0 {
		return errors.New("a raw address needs a length: 0xADDR/LEN")
	}
	if sp.Mode.Kind == hwbp.Exec && sp.Len > 1 {
		return errors.New("an execute watch covers one instruction address: drop /LEN")
	}
	if sp.Symbol == "" {
		if err := placeable(sp.Addr, sp.Len, sp.Mode); err != nil {
			return err
		}
	}
	return nil
}

// placeable checks a resolved range.
func placeable(addr, n uint64, m hwbp.Mode) error {
	if m.Kind == hwbp.Exec {
		return nil
	}
	if n == 0 || n > 1<<30 || addr+n < addr || addr+n > 1<<47 {
		return fmt.Errorf("cannot watch %d bytes at %#x", n, addr)
	}
	return nil
}

// SpecResolver turns watch SPECs (package symbols) into watches in a
// process, as the files that define their symbols get mapped. Its Resolve
// method is a WatchResolver.
type SpecResolver struct {
	specs  []symbols.Spec
	names  []string
	tables map[string]*symbols.Table
	placed map[int]bool
	// Warn, if set, receives one line for each SPEC a program lacks (a
	// child that executed another program), once per SPEC and program.
	Warn   func(string)
	warned map[string]bool
}

func (r *SpecResolver) table(path string) (*symbols.Table, error) {
	if t := r.tables[path]; t != nil {
		return t, nil
	}
	t, err := symbols.Open(path)
	if err != nil {
		return nil, err
	}
	r.tables[path] = t
	return t, nil
}

// Check resolves the executable's symbols before the session starts, for
// clear errors: unknown names (with suggestions), no symbols at all.
func (r *SpecResolver) Check(exe string) error {
	for i, sp := range r.specs {
		var err error
		switch {
		case sp.Symbol == "":
			err = r.checkAddr(exe, i, sp)
		case sp.Lib != "":
			err = r.checkLib(exe, i, sp)
		default:
			err = r.checkSymbol(exe, i, sp)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkSymbol resolves a SPEC's symbol in the executable.
func (r *SpecResolver) checkSymbol(exe string, i int, sp symbols.Spec) error {
	t, err := r.table(exe)
	if err != nil {
		return fmt.Errorf("%s: %w", r.names[i], err)
	}
	if len(t.Symbols()) == 0 {
		return fmt.Errorf("%s has no symbols (stripped?): watch raw addresses instead, 0xADDR/LEN", exe)
	}
	_, addr, n, err := t.Resolve(sp)
	if err != nil {
		if errors.Is(err, symbols.ErrNotFound) && !hasSymtab(exe) {
			// A stripped file still has .dynsym (its imports), so
			// the table is not empty; say why the name is missing.
			return fmt.Errorf("%s: %s has no symbol table (stripped?): watch raw addresses instead, 0xADDR/LEN (take them from an unstripped build: mmiotrace symbols FILE)", r.names[i], exe)
		}
		return err
	}
	if err := placeable(addr, n, sp.Mode); err != nil {
		return fmt.Errorf("%s: %v", r.names[i], err)
	}
	return nil
}

// checkAddr refuses a raw address that cannot be one at run time: a
// link-time address of a position-independent executable, which the
// kernel loads at a random base (nothing is ever mapped there).
func (r *SpecResolver) checkAddr(exe string, i int, sp symbols.Spec) error {
	t, err := r.table(exe)
	if err != nil || t.Type != elf.ET_DYN || !t.LinkTimeAddr(sp.Addr) {
		return nil // the address is checked when the watch is placed
	}
	return fmt.Errorf("%s: %#x is a link-time address of %s, which is position-independent (loaded at a random address): watch the symbol by name, or attach with -p and take the run-time address from 'mmiotrace symbols -p PID'", r.names[i], sp.Addr, realPath(exe))
}

// checkLib catches a LIB:SYMBOL that cannot be one: SYMBOL missing from the
// executable when LIB names the executable itself, or LIB a symbol of the
// executable with no library of that name in sight (counter:zzz, a MODE
// mistyped, reads as the symbol "zzz" of a library "counter").
func (r *SpecResolver) checkLib(exe string, i int, sp symbols.Spec) error {
	path := realPath(exe)
	t, err := r.table(exe)
	if err != nil {
		return nil // not an executable we can read: the run says
	}
	modeHint := "; a MODE is rw-, -w-, r-- or --x"
	if libMatch(sp.Lib, path) {
		if _, _, _, err := t.Resolve(symbols.Spec{Symbol: sp.Symbol, Off: sp.Off, Len: sp.Len, Mode: sp.Mode}); err != nil {
			return fmt.Errorf("%s: %w%s", r.names[i], err, modeHint)
		}
		return nil
	}
	if strings.Contains(sp.Lib, ".so") {
		return nil // a library's file name: it may be loaded later
	}
	if _, _, _, err := t.Resolve(symbols.Spec{Symbol: sp.Lib}); err != nil {
		return nil // not a symbol of the executable: take it as a library
	}
	for _, lib := range neededLibs(exe) {
		if libMatch(sp.Lib, lib) {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is a symbol of %s, and no library it loads is named like it: for a library's symbol write LIB:SYMBOL with the library's file name (libfoo.so:SYMBOL)%s", r.names[i], sp.Lib, path, modeHint)
}

// neededLibs returns the libraries an executable names (DT_NEEDED).
func neededLibs(exe string) []string {
	f, err := elf.Open(exe)
	if err != nil {
		return nil
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	return libs
}

// realPath resolves /proc/PID/exe to the executable's path, for messages
// and for matching LIB against it.
func realPath(exe string) string {
	if p, err := os.Readlink(exe); err == nil && strings.HasPrefix(exe, "/proc/") {
		return p
	}
	return exe
}

// hasSymtab reports whether the ELF file at path has a .symtab section
// (true when it cannot tell, so no misleading hint is given).
func hasSymtab(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	return f.Section(".symtab") != nil
}

// Pending returns how many SPECs have not been placed (their library was
// never mapped).
func (r *SpecResolver) Pending() int { return len(r.specs) - len(r.placed) }

// Resolve implements WatchResolver. A symbol the process's program or
// library lacks is not an error: Check has vetted the program the session
// starts with, so this is a process that executed another program, which is
// reported once (Warn) and watched for the other SPECs.
func (r *SpecResolver) Resolve(pid int) ([]Watch, int, error) {
	maps, err := ReadMaps(pid)
	if err != nil {
		return nil, 0, err
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	var out []Watch
	pending := 0
	for i, sp := range r.specs {
		w := Watch{Name: r.names[i], Mode: sp.Mode, Addr: sp.Addr, Len: sp.Len}
		if sp.Symbol != "" {
			addr, n, ok, path, err := r.locate(sp, maps, exe)
			if err != nil {
				r.missing(r.names[i], path, pid, err)
				continue
			}
			if !ok {
				pending++
				continue
			}
			w.Addr, w.Len = addr, n
		}
		if w.Mode.Kind == hwbp.Exec {
			w.Len = 1
		}
		r.placed[i] = true
		out = append(out, w)
	}
	return out, pending, nil
}

// missing reports, once per SPEC and file, a SPEC that file cannot serve.
func (r *SpecResolver) missing(name, path string, pid int, err error) {
	key := name + "\x00" + path
	if r.warned[key] || r.Warn == nil {
		return
	}
	r.warned[key] = true
	why := err.Error()
	if errors.Is(err, symbols.ErrNotFound) {
		why = "no such symbol"
	}
	r.Warn(fmt.Sprintf("watch %s: not in %s (process %d): %s; not watched there", name, path, pid, why))
}

// locate finds a symbol's run-time address in the mapped files: the
// executable, or the library named by LIB. It returns the file it looked in.
func (r *SpecResolver) locate(sp symbols.Spec, maps []Mapping, exe string) (uint64, uint64, bool, string, error) {
	for _, m := range maps {
		if m.Offset != 0 || !strings.HasPrefix(m.Path, "/") {
			continue
		}
		if sp.Lib == "" && m.Path != exe || sp.Lib != "" && !libMatch(sp.Lib, m.Path) {
			continue
		}
		t, err := r.table(m.Path)
		if err != nil {
			return 0, 0, false, m.Path, err
		}
		_, addr, n, err := t.Resolve(sp)
		if err != nil {
			return 0, 0, false, m.Path, err
		}
		bias, ok := t.BiasOf(m)
		if !ok {
			continue
		}
		return addr + bias, n, true, m.Path, nil
	}
	return 0, 0, false, "", nil
}

func libMatch(lib, path string) bool {
	return path == lib || filepath.Base(path) == lib || strings.Contains(filepath.Base(path), lib)
}
