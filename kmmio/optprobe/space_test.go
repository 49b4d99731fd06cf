package optprobe

import (
	"errors"
	"testing"
)

// fakeMapper hands out views of memory it pretends to map, within gaps.
type fakeMapper struct {
	gaps   []Interval
	mapped []Interval
	refuse uint64 // an address that is taken after all
}

func (m *fakeMapper) MapCode(addr uint64, size int) ([]byte, error) {
	if addr == m.refuse {
		return nil, errors.New("taken")
	}
	for _, r := range m.mapped {
		if addr <= r.Hi && r.Lo < addr+uint64(size) {
			return nil, errors.New("overlap")
		}
	}
	m.mapped = append(m.mapped, Interval{addr, addr + uint64(size) - 1})
	return make([]byte, size), nil
}

// Gaps returns the gaps minus what was mapped.
func (m *fakeMapper) Gaps() []Interval {
	out := m.gaps
	for _, r := range m.mapped {
		var next []Interval
		for _, g := range out {
			if r.Hi < g.Lo || r.Lo > g.Hi {
				next = append(next, g)
				continue
			}
			if g.Lo < r.Lo {
				next = append(next, Interval{g.Lo, r.Lo - 1})
			}
			if r.Hi < g.Hi {
				next = append(next, Interval{r.Hi + 1, g.Hi})
			}
		}
		out = next
	}
	return out
}

// TestSpace allocates detours under placement constraints: each lands in
// its interval, inside a region, without overlapping another; released
// space is reused; a refused mapping is skipped.
func TestSpace(t *testing.T) {
	m := &fakeMapper{gaps: []Interval{{0x10000, 0x3fffffff}}, refuse: 0x20000000}
	s := NewSpace(m)
	type alloc struct{ at, n uint64 }
	var got []alloc
	cands := [][]Interval{
		{{0x1000_0000, 0x1000_ffff}},
		{{0x1000_0100, 0x1000_01ff}},                             // narrow: 256 bytes
		{{0x2000_0000, 0x2000_0fff}, {0x3000_0000, 0x3000_00ff}}, // the first is refused
		{{0x1000_0000, 0x1000_ffff}},
		{{0x0fff_e000, 0x1000_0000}}, // just below a region
	}
	for _, c := range cands {
		at, view, err := s.Alloc(c, 300)
		if err != nil {
			t.Fatalf("alloc in %x: %v", c, err)
		}
		if len(view) != 300 {
			t.Fatalf("view of %d bytes", len(view))
		}
		ok := false
		for _, iv := range c {
			ok = ok || at >= iv.Lo && at <= iv.Hi
		}
		if !ok {
			t.Errorf("allocated %#x outside %x", at, c)
		}
		in := false
		for _, r := range s.Regions() {
			in = in || at >= r.Lo && at+299 <= r.Hi
		}
		if !in {
			t.Errorf("allocated %#x outside every region %x", at, s.Regions())
		}
		for _, a := range got {
			if at < a.at+a.n && a.at < at+300 {
				t.Errorf("%#x overlaps %#x", at, a.at)
			}
		}
		got = append(got, alloc{at, 300})
	}
	s.Release(got[1].at, 300)
	at, _, err := s.Alloc(cands[1], 300)
	if err != nil || at != got[1].at {
		t.Errorf("realloc after release: %#x %v, want %#x", at, err, got[1].at)
	}
	if _, _, err := s.Alloc([]Interval{{0x5000_0000, 0x5000_0fff}}, 300); !errors.Is(err, ErrNoSpace) {
		t.Errorf("alloc outside the gaps: %v, want ErrNoSpace", err)
	}
}
