package tracer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mmiotrace/mmiotrace/internal/glob"
)

// DefaultGlobs select device mappings, the default when neither a glob nor a
// range is given: the mappings a user-space driver makes of device memory.
var DefaultGlobs = []string{
	"/dev/mem",
	"/dev/uio*",
	"/dev/vfio/*",
	"/dev/vfio/devices/*",
	`anon_inode:\[vfio-device\]`, // a VFIO group's device file
	"/dev/dri/*",
	"/sys/bus/pci/devices/*/resource*",
	"/sys/devices/**/resource*",
}

// Range is a virtual address range [Addr, Addr+Len) given with --range.
type Range struct {
	Addr, Len uint64
}

// ParseRange parses ADDR+LEN, each hex (0x...) or decimal.
func ParseRange(s string) (Range, error) {
	a, l, ok := strings.Cut(s, "+")
	if !ok {
		return Range{}, fmt.Errorf("bad range %q: want ADDR+LEN, e.g. 0x7f0000001000+4096", s)
	}
	addr, err := strconv.ParseUint(strings.TrimSpace(a), 0, 64)
	if err != nil {
		return Range{}, fmt.Errorf("bad range %q: address: %w", s, errors.Unwrap(err))
	}
	n, err := strconv.ParseUint(strings.TrimSpace(l), 0, 64)
	if err != nil {
		return Range{}, fmt.Errorf("bad range %q: length: %w", s, errors.Unwrap(err))
	}
	if n == 0 {
		return Range{}, fmt.Errorf("bad range %q: length is zero", s)
	}
	if addr+n < addr || addr+n > 1<<47 {
		return Range{}, fmt.Errorf("bad range %q: beyond the user address space", s)
	}
	return Range{addr, n}, nil
}

// Selection says which memory to trace: mappings whose backing path
// matches one of Globs, and the parts of any mapping inside one of Ranges.
type Selection struct {
	Globs  []string
	Ranges []Range
}

// ValidateGlob reports a malformed glob.
func ValidateGlob(g string) error { return glob.Validate(g) }

// MatchGlob reports whether name matches glob. Glob has the syntax of
// path.Match, applied per path element, plus "**", which matches any number
// of whole elements (zero or more).
func MatchGlob(pattern, name string) bool { return glob.Match(pattern, name) }

// Pieces returns the parts of m to trace, in address order: the whole
// mapping when its path matches a glob (the kernel's names of anonymous
// mappings, such as [heap] and [stack], count as paths), else its overlap
// with each range.
func (s *Selection) Pieces(m *Mapping) []Range {
	if m.Path != "" {
		for _, g := range s.Globs {
			if MatchGlob(g, m.Path) {
				return []Range{{m.Start, m.Len()}}
			}
		}
	}
	var out []Range
	for _, r := range s.Ranges {
		lo, hi := max(r.Addr, m.Start), min(r.Addr+r.Len, m.End)
		if lo < hi {
			out = append(out, Range{lo, hi - lo})
		}
	}
	return out
}
