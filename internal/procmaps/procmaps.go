package procmaps

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Protection bits, as mmap takes them.
const (
	ProtRead  = 0x1
	ProtWrite = 0x2
	ProtExec  = 0x4
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp" and the like
	Offset     uint64 // file offset of Start
	Dev        uint64 // device of the mapped file, as unix.Mkdev builds it
	Inode      uint64
	// Path is the file, or the kernel's name of an anonymous mapping
	// ("[heap]", "[stack]", "[vdso]"), or "" . A file removed since it was
	// mapped has its name without the kernel's " (deleted)" suffix.
	Path    string
	Deleted bool
}

// Len returns the mapping's length in bytes.
func (m *Mapping) Len() uint64 { return m.End - m.Start }

// Prot returns the mapping's protection as mmap's PROT_ bits.
func (m *Mapping) Prot() int {
	p := 0
	if len(m.Perms) == 4 {
		if m.Perms[0] == 'r' {
			p |= ProtRead
		}
		if m.Perms[1] == 'w' {
			p |= ProtWrite
		}
		if m.Perms[2] == 'x' {
			p |= ProtExec
		}
	}
	return p
}

// Shared reports a MAP_SHARED mapping.
func (m *Mapping) Shared() bool { return len(m.Perms) == 4 && m.Perms[3] == 's' }

// Anonymous reports a mapping with no backing file.
func (m *Mapping) Anonymous() bool { return m.Inode == 0 && !strings.HasPrefix(m.Path, "/") }

// Read reads the mappings of process pid.
func Read(pid int) ([]Mapping, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	maps, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/maps: %w", pid, err)
	}
	return maps, nil
}

// Parse parses the contents of a /proc/PID/maps file.
func Parse(data []byte) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		m, err := parseLine(sc.Text())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// parseLine parses "start-end perms offset major:minor inode   path". The
// path is everything after the inode, spaces included.
func parseLine(line string) (Mapping, error) {
	var m Mapping
	bad := func() (Mapping, error) { return Mapping{}, fmt.Errorf("bad maps line %q", line) }
	rest := line
	field := func() string {
		rest = strings.TrimLeft(rest, " ")
		f, r, _ := strings.Cut(rest, " ")
		rest = r
		return f
	}
	rng, perms, off, dev, inode := field(), field(), field(), field(), field()
	lo, hi, ok1 := strings.Cut(rng, "-")
	maj, min, ok2 := strings.Cut(dev, ":")
	if !ok1 || !ok2 || len(perms) != 4 {
		return bad()
	}
	var errs [7]error
	var major, minor uint64
	m.Start, errs[0] = strconv.ParseUint(lo, 16, 64)
	m.End, errs[1] = strconv.ParseUint(hi, 16, 64)
	m.Offset, errs[2] = strconv.ParseUint(off, 16, 64)
	major, errs[3] = strconv.ParseUint(maj, 16, 32)
	minor, errs[4] = strconv.ParseUint(min, 16, 32)
	m.Inode, errs[5] = strconv.ParseUint(inode, 10, 64)
	for _, err := range errs {
		if err != nil {
			return bad()
		}
	}
	m.Perms = perms
	m.Dev = unix.Mkdev(uint32(major), uint32(minor))
	m.Path = strings.TrimLeft(rest, " ")
	if p, ok := strings.CutSuffix(m.Path, " (deleted)"); ok {
		m.Path, m.Deleted = p, true
	}
	return m, nil
}
