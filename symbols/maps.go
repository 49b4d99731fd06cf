package symbols

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/procmaps"
)

// pageMask masks the offset within an x86-64 base page.
const pageMask = 4096 - 1

// Mapping is one line of /proc/PID/maps.
type Mapping = procmaps.Mapping

// ReadMaps reads the mappings of process pid.
func ReadMaps(pid int) ([]Mapping, error) {
	maps, err := procmaps.Read(pid)
	if err != nil {
		return nil, fmt.Errorf("symbols: %w", err)
	}
	return maps, nil
}

// BiasAt returns the load bias of the file when part of one of its PT_LOAD
// segments is mapped at mapStart from file offset mapOffset (both as
// /proc/PID/maps or an mmap event report them), and false if no segment
// holds that offset or several do at different biases. The bias is what to
// add to link-time addresses; it is 0 for a fixed-address executable. A
// mapping need not start at its segment's first page: mprotect (RELRO, for
// one) splits segments into several mappings.
//
// The mapping at offset 0 is never ambiguous, and it is the first one the
// dynamic loader makes for a library (it reserves the whole extent with it
// before mapping the other segments over it). Later offsets can be: with
// the usual separate-code layout the last read-only page and the start of
// the writable segment share a page of the file. BiasOf uses a mapping's
// permissions to tell more of them apart.
func (t *Table) BiasAt(mapStart, mapOffset uint64) (uint64, bool) {
	return t.biasAt(mapStart, mapOffset, func(elf.ProgFlag) bool { return true })
}

// BiasOf is BiasAt for a mapping read from /proc/PID/maps, using its
// permissions to choose between segments at the same page offset: a
// writable mapping belongs to a writable segment, an executable one to an
// executable segment, and a read-only one to a segment that is not
// executable (it may be the RELRO part of a writable one).
func (t *Table) BiasOf(m Mapping) (uint64, bool) {
	w := strings.Contains(m.Perms, "w")
	x := strings.Contains(m.Perms, "x")
	return t.biasAt(m.Start, m.Offset, func(f elf.ProgFlag) bool {
		switch {
		case w:
			return f&elf.PF_W != 0
		case x:
			return f&elf.PF_X != 0
		}
		return f&elf.PF_X == 0
	})
}

func (t *Table) biasAt(mapStart, mapOffset uint64, fits func(elf.ProgFlag) bool) (uint64, bool) {
	var bias uint64
	n := 0
	for _, p := range t.loads {
		first := p.Off &^ pageMask
		if mapOffset < first || mapOffset >= max(p.Off+p.Filesz, first+1) || !fits(p.Flags) {
			continue
		}
		// p_vaddr and p_offset are congruent modulo the page size, so the
		// page at mapOffset sits at link-time address
		// mapOffset + (p_vaddr - p_offset).
		b := mapStart - (mapOffset + p.Vaddr - p.Off)
		if n > 0 && b != bias {
			return 0, false
		}
		bias = b
		n++
	}
	return bias, n > 0
}

// ResolveInMapping returns the run-time address of sym in a process that
// has mapped one of t's segments at mapStart from file offset mapOffset (for
// example a library just loaded by dlopen), and false when the mapping is
// not one of t's segments or sym has no fixed address (TLS). The dynamic
// loader maps all segments of a file at one bias, so any of them places
// every symbol. Like BiasAt, it reports false for a mapping whose offset is
// ambiguous; the offset-0 mapping always works.
func ResolveInMapping(mapStart, mapOffset uint64, t *Table, sym Symbol) (uint64, bool) {
	if sym.Kind == TLS {
		return 0, false
	}
	bias, ok := t.BiasAt(mapStart, mapOffset)
	if !ok {
		return 0, false
	}
	return sym.Addr + bias, true
}

// Bias returns the load bias of the file at path in process pid, from the
// process's mappings of that file (found by device and inode, else by path),
// for tables of files already mapped: the executable and the libraries
// loaded at startup. An empty path means t.Path. It is 0 for a
// fixed-address (ET_EXEC) executable.
func Bias(pid int, path string, t *Table) (uint64, error) {
	if path == "" {
		path = t.Path
	}
	maps, err := ReadMaps(pid)
	if err != nil {
		return 0, err
	}
	return biasIn(maps, sameFile(path), t, path, pid)
}

// biasIn finds the bias of t from the mappings that same accepts.
func biasIn(maps []Mapping, same func(Mapping) bool, t *Table, path string, pid int) (uint64, error) {
	var bias uint64
	n := 0
	for _, m := range maps {
		if !same(m) {
			continue
		}
		b, ok := t.BiasOf(m)
		if !ok {
			continue
		}
		if n > 0 && b != bias {
			return 0, fmt.Errorf("symbols: %s is mapped at several biases in process %d (%#x, %#x)", path, pid, bias, b)
		}
		bias = b
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("symbols: %s is not mapped in process %d", path, pid)
	}
	return bias, nil
}

// sameFile returns a test for mappings of the file at path: by device and
// inode when path can be stat'ed and the mapping reports them, by path
// otherwise (maps shows resolved absolute paths).
func sameFile(path string) func(Mapping) bool {
	abs, err := filepath.Abs(path)
	if err == nil {
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			abs = r
		}
	}
	var st unix.Stat_t
	statOK := unix.Stat(path, &st) == nil
	return func(m Mapping) bool {
		if m.Inode == 0 {
			return false
		}
		if statOK && m.Inode == st.Ino && m.Dev == st.Dev {
			return true
		}
		p := strings.TrimSuffix(m.Path, " (deleted)")
		return p == abs
	}
}
