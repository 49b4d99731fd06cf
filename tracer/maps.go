package tracer

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Prot       int  // PROT_READ|PROT_WRITE|PROT_EXEC
	Shared     bool // MAP_SHARED ('s'); otherwise private
	Offset     uint64
	Inode      uint64
	Path       string // backing file, or "" for anonymous, or [heap], [stack], ...
}

// Len returns the mapping's length in bytes.
func (m *Mapping) Len() uint64 { return m.End - m.Start }

// Anonymous reports a mapping with no backing file.
func (m *Mapping) Anonymous() bool { return m.Inode == 0 && !strings.HasPrefix(m.Path, "/") }

// ReadMaps parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	return ParseMaps(data)
}

// ParseMaps parses the contents of a /proc/PID/maps file.
func ParseMaps(data []byte) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		m, err := parseMapsLine(sc.Text())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// parseMapsLine parses "start-end perms offset dev inode   path". The path
// is everything after the inode, spaces included, less the " (deleted)"
// suffix the kernel appends for unlinked files.
func parseMapsLine(line string) (Mapping, error) {
	var m Mapping
	bad := func() (Mapping, error) { return Mapping{}, fmt.Errorf("bad maps line %q", line) }
	rest := line
	field := func() string {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			f := rest
			rest = ""
			return f
		}
		f := rest[:i]
		rest = rest[i+1:]
		return f
	}
	rng, perms, off, _, inode := field(), field(), field(), field(), field()
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok || len(perms) != 4 {
		return bad()
	}
	var err1, err2, err3, err4 error
	m.Start, err1 = strconv.ParseUint(lo, 16, 64)
	m.End, err2 = strconv.ParseUint(hi, 16, 64)
	m.Offset, err3 = strconv.ParseUint(off, 16, 64)
	m.Inode, err4 = strconv.ParseUint(inode, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return bad()
	}
	if perms[0] == 'r' {
		m.Prot |= protRead
	}
	if perms[1] == 'w' {
		m.Prot |= protWrite
	}
	if perms[2] == 'x' {
		m.Prot |= protExec
	}
	m.Shared = perms[3] == 's'
	m.Path = strings.TrimSuffix(strings.TrimLeft(rest, " "), " (deleted)")
	return m, nil
}

const (
	protRead  = 0x1
	protWrite = 0x2
	protExec  = 0x4
)
