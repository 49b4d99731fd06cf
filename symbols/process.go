package symbols

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Image is one ELF file mapped in a process: its symbols and load bias.
type Image struct {
	Path  string // as /proc/PID/maps names it
	Table *Table
	Bias  uint64
}

// Images opens the symbol tables of the ELF files process pid has mapped,
// the executable first, then the others in address order. Mapped files that
// are not ELF (locale archives, fonts, data files) and ELF files without
// symbols are left out. A file is opened through /proc/PID/root when its
// path does not resolve in the caller's mount namespace.
func Images(pid int) ([]Image, error) {
	maps, err := ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	exe = strings.TrimSuffix(exe, " (deleted)")
	type id struct{ dev, ino uint64 }
	seen := map[id]bool{}
	var out []Image
	for _, m := range maps {
		if m.Inode == 0 || !strings.HasPrefix(m.Path, "/") || seen[id{m.Dev, m.Inode}] {
			continue
		}
		seen[id{m.Dev, m.Inode}] = true
		path := strings.TrimSuffix(m.Path, " (deleted)")
		t, err := Open(path)
		if err != nil {
			t, err = Open("/proc/" + strconv.Itoa(pid) + "/root" + path)
		}
		if err != nil {
			continue
		}
		dev, ino := m.Dev, m.Inode
		bias, err := biasIn(maps, func(o Mapping) bool { return o.Dev == dev && o.Inode == ino }, t, path, pid)
		if err != nil {
			continue
		}
		img := Image{Path: path, Table: t, Bias: bias}
		if path == exe {
			out = append([]Image{img}, out...)
		} else {
			out = append(out, img)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("symbols: no ELF file with symbols mapped in process %d", pid)
	}
	return out, nil
}

// Target is a spec resolved in a process: the run-time range to watch.
type Target struct {
	Spec   Spec
	Image  *Image // nil for a raw address
	Symbol Symbol // zero for a raw address
	Addr   uint64 // run-time address
	Len    uint64
}

// ResolveSpec places sp in a process whose images are imgs (from Images).
// A raw address is taken as is. A symbol is looked up in the image whose
// path contains sp.Lib when given, else in each image in order (the
// executable first) until one has it. The error for a symbol found nowhere
// carries the suggestions of the first image's table.
func ResolveSpec(imgs []Image, sp Spec) (Target, error) {
	if sp.Symbol == "" {
		if sp.Len == 0 {
			return Target{}, fmt.Errorf("symbols: spec %v: an address needs a length", sp)
		}
		return Target{Spec: sp, Addr: sp.Addr, Len: sp.Len}, nil
	}
	var firstErr error
	matched := false
	for i := range imgs {
		img := &imgs[i]
		if sp.Lib != "" && !strings.Contains(img.Path, sp.Lib) {
			continue
		}
		matched = true
		sym, addr, n, err := img.Table.Resolve(sp)
		if err == nil {
			return Target{Spec: sp, Image: img, Symbol: sym, Addr: addr + img.Bias, Len: n}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Target{}, err // found, but unusable or ambiguous
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if !matched {
		return Target{}, fmt.Errorf("symbols: spec %v: no mapped file matches %q", sp, sp.Lib)
	}
	return Target{}, firstErr
}
