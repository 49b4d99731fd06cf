package ptrace

import (
	"fmt"
	"os"
	"strconv"
)

// Mem reads and writes a tracee's memory through /proc/PID/mem. The kernel
// performs these accesses with FOLL_FORCE, so they work on PROT_NONE (armed)
// pages and on read-only text, which is what the tracer needs. They are not
// single accesses of a given width: use them for ordinary memory only, never
// for device registers.
type Mem struct {
	f *os.File
}

// OpenMem opens /proc/PID/mem for reading and writing.
func OpenMem(pid int) (*Mem, error) {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/mem", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open tracee memory: %w", err)
	}
	return &Mem{f: f}, nil
}

// ReadAt reads len(p) bytes at the tracee address addr.
func (m *Mem) ReadAt(p []byte, addr uint64) error {
	n, err := m.f.ReadAt(p, int64(addr))
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("short read %d of %d", n, len(p))
	}
	return fmt.Errorf("read tracee memory at %#x: %w", addr, err)
}

// ReadPartial reads up to len(p) bytes at addr and returns how many it got,
// for instruction fetches that may end at an unmapped page.
func (m *Mem) ReadPartial(p []byte, addr uint64) int {
	n, _ := m.f.ReadAt(p, int64(addr))
	if n > 0 {
		return n
	}
	// The first page may be readable only in part: retry up to its end.
	if rem := 4096 - int(addr&4095); rem < len(p) {
		n, _ = m.f.ReadAt(p[:rem], int64(addr))
	}
	return max(n, 0)
}

// WriteAt writes p at the tracee address addr.
func (m *Mem) WriteAt(p []byte, addr uint64) error {
	n, err := m.f.WriteAt(p, int64(addr))
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("short write %d of %d", n, len(p))
	}
	return fmt.Errorf("write tracee memory at %#x: %w", addr, err)
}

// Close releases the file.
func (m *Mem) Close() error { return m.f.Close() }
