package optprobe

import (
	"errors"
	"fmt"
	"sort"
)

// Mapper maps executable memory for detours into the program.
type Mapper interface {
	// MapCode maps size bytes (a multiple of the page size) at exactly
	// addr in the program, readable and executable there, and returns the
	// tracer's writable view of the same memory.
	MapCode(addr uint64, size int) ([]byte, error)
	// Gaps returns the ranges of the program's address space that are
	// free for such mappings, in address order.
	Gaps() []Interval
}

// Space is the program's detour memory: regions mapped near the code they
// serve, carved into detours. It is not safe for concurrent use.
type Space struct {
	m       Mapper
	regions []*region
}

type region struct {
	addr uint64
	view []byte
	used []span // sorted, disjoint
}

type span struct{ lo, hi uint64 }

// regionSize is how much a new region maps when the gap allows.
const regionSize = 64 << 10

// maxMapTries bounds the mappings Alloc attempts.
const maxMapTries = 8

const pageSize = 4096

// ErrNoSpace reports that no placement of a detour was possible.
var ErrNoSpace = errors.New("optprobe: no room for the detour")

// NewSpace returns an empty Space.
func NewSpace(m Mapper) *Space { return &Space{m: m} }

// Regions returns the mapped regions.
func (s *Space) Regions() []Interval {
	var out []Interval
	for _, r := range s.regions {
		out = append(out, Interval{r.addr, r.addr + uint64(len(r.view)) - 1})
	}
	return out
}

// Alloc finds size bytes starting in one of the intervals (tried in
// order), in a region or in a new one, and returns the start and the
// tracer's view of the bytes.
func (s *Space) Alloc(cands []Interval, size int) (uint64, []byte, error) {
	n := uint64(size)
	for _, c := range cands {
		for _, r := range s.regions {
			if a, ok := r.fit(c, n); ok {
				return a, r.take(a, n), nil
			}
		}
	}
	gaps := s.m.Gaps()
	failed := 0
	for _, c := range cands {
		for _, g := range gaps {
			base, rsize, ok := place(c, g, n)
			if !ok {
				continue
			}
			view, err := s.m.MapCode(base, int(rsize))
			if err != nil {
				// Raced with a mapping Gaps did not show: try on, a few
				// times (each try costs the program a system call).
				if failed++; failed == maxMapTries {
					return 0, nil, fmt.Errorf("%w: %v", ErrNoSpace, err)
				}
				continue
			}
			r := &region{addr: base, view: view}
			s.regions = append(s.regions, r)
			sort.Slice(s.regions, func(i, j int) bool { return s.regions[i].addr < s.regions[j].addr })
			a, ok := r.fit(c, n)
			if !ok {
				return 0, nil, fmt.Errorf("optprobe: new region %#x+%#x does not fit %#x-%#x", base, rsize, c.Lo, c.Hi)
			}
			return a, r.take(a, n), nil
		}
	}
	return 0, nil, ErrNoSpace
}

// place picks a page-aligned region inside gap g that can hold n bytes
// starting in c.
func place(c, g Interval, n uint64) (base, size uint64, ok bool) {
	lo := max(c.Lo, (g.Lo+pageSize-1)&^(pageSize-1))
	if lo > c.Hi || lo+n-1 > g.Hi || lo+n < lo {
		return 0, 0, false
	}
	base = lo &^ (pageSize - 1)
	end := min(base+regionSize, (g.Hi+1)&^(pageSize-1))
	if end < lo+n {
		return 0, 0, false
	}
	return base, end - base, true
}

// fit finds the lowest start in c, on 16 bytes if possible, of n free
// bytes in the region.
func (r *region) fit(c Interval, n uint64) (uint64, bool) {
	glo := r.addr
	for i := 0; i <= len(r.used); i++ {
		ghi := r.addr + uint64(len(r.view))
		if i < len(r.used) {
			ghi = r.used[i].lo
		}
		start := max(glo, c.Lo)
		for _, a := range []uint64{(start + 15) &^ 15, start} {
			if a <= c.Hi && a+n <= ghi {
				return a, true
			}
		}
		if i < len(r.used) {
			glo = r.used[i].hi
		}
	}
	return 0, false
}

func (r *region) take(a, n uint64) []byte {
	r.used = append(r.used, span{a, a + n})
	sort.Slice(r.used, func(i, j int) bool { return r.used[i].lo < r.used[j].lo })
	return r.view[a-r.addr : a-r.addr+n]
}

// Release gives back the n bytes at a.
func (s *Space) Release(a uint64, n int) {
	for _, r := range s.regions {
		for i, u := range r.used {
			if u.lo == a && u.hi == a+uint64(n) {
				r.used = append(r.used[:i], r.used[i+1:]...)
				return
			}
		}
	}
}
