package hwbp

import (
	"errors"
	"syscall"
	"testing"
)

// The DR7 layout tests pin each field to the bit positions of the Intel SDM,
// Vol. 3, 18.2.4 (Figure 18-1), written out by hand rather than derived from
// the code under test.
func TestDR7Layout(t *testing.T) {
	cases := []struct {
		slot int
		kind Kind
		len  int
		want DR7
	}{
		// L0 = bit 0; R/W0 = bits 16-17; LEN0 = bits 18-19.
		{0, Exec, 1, 1<<0 | 0b0000<<16},
		{0, Write, 1, 1<<0 | 0b0001<<16},
		{0, ReadWrite, 8, 1<<0 | 0b1011<<16},
		// L1 = bit 2; R/W1 and LEN1 = bits 20-23. Write (01) of 4 bytes
		// (LEN 11): nibble 0b1101.
		{1, Write, 4, 1<<2 | 0b1101<<20},
		{1, ReadWrite, 2, 1<<2 | 0b0111<<20},
		// L2 = bit 4; bits 24-27.
		{2, Write, 8, 1<<4 | 0b1001<<24},
		// L3 = bit 6; bits 28-31.
		{3, ReadWrite, 4, 1<<6 | 0b1111<<28},
		{3, Exec, 1, 1 << 6},
	}
	for _, c := range cases {
		got, ok := DR7(0).Slot(c.slot, c.kind, c.len)
		if !ok {
			t.Fatalf("Slot(%d, %v, %d) refused", c.slot, c.kind, c.len)
		}
		want := c.want | 1<<8 // LE
		if got != want {
			t.Errorf("Slot(%d, %v, %d) = %#x, want %#x", c.slot, c.kind, c.len, uint64(got), uint64(want))
		}
		if !got.LocalEnabled(c.slot) || got.GlobalEnabled(c.slot) || !got.Enabled(c.slot) {
			t.Errorf("%#x: enable bits of slot %d wrong", uint64(got), c.slot)
		}
		if got.RW(c.slot) != c.kind || got.Len(c.slot) != c.len {
			t.Errorf("%#x: decoded slot %d as %v/%d, want %v/%d", uint64(got), c.slot, got.RW(c.slot), got.Len(c.slot), c.kind, c.len)
		}
		for o := range NumSlots {
			if o != c.slot && got.Enabled(o) {
				t.Errorf("%#x: slot %d enabled too", uint64(got), o)
			}
		}
		if c := got.Clear(c.slot); c != 1<<8 {
			t.Errorf("Clear left %#x, want only LE", uint64(c))
		}
	}
}

func TestDR7LenEncoding(t *testing.T) {
	// SDM: 00 = 1 byte, 01 = 2 bytes, 10 = 8 bytes, 11 = 4 bytes.
	for n, bits := range map[int]uint8{1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10} {
		d, ok := DR7(0).SetLen(2, n)
		if !ok || d != DR7(bits)<<26 || d.LenBits(2) != bits || d.Len(2) != n {
			t.Errorf("SetLen(2, %d) = %#x, %v; want bits %02b at 26-27", n, uint64(d), ok, bits)
		}
	}
	for _, n := range []int{0, 3, 5, 16} {
		if _, ok := DR7(0).SetLen(0, n); ok {
			t.Errorf("SetLen accepted length %d", n)
		}
	}
	if _, ok := DR7(0).Slot(0, Exec, 4); ok {
		t.Error("Slot accepted an execution breakpoint of length 4")
	}
}

func TestDR7GlobalAndExact(t *testing.T) {
	// Linux's own encoding: Gi plus GE (bit 9), as in encode_dr7.
	d := DR7(0).SetGlobal(2, true) | DR7GE
	if d != 1<<5|1<<9 {
		t.Fatalf("G2|GE = %#x", uint64(d))
	}
	if !d.Enabled(2) || d.LocalEnabled(2) || !d.GlobalEnabled(2) {
		t.Error("G2 not decoded as enabled-global")
	}
	if DR7LE != 0x100 || DR7GE != 0x200 || DR7Reserved != 0x400 || DR7GD != 0x2000 {
		t.Error("LE/GE/reserved/GD constants moved")
	}
	if DR7(0).Enabled(4) || DR7(0xff).Enabled(-1) || DR7(0).SetLocal(7, true) != 0 {
		t.Error("out-of-range slots must read as disabled and not be settable")
	}
}

func TestDR6(t *testing.T) {
	// The kernel reports DR6 with reserved bits in architectural polarity:
	// 0xffff0ff0 is the reset value, no condition met.
	d := DR6(0xffff0ff0)
	if d.Hits() != 0 || d.SingleStep() || d.DebugRegAccess() {
		t.Errorf("reset value decoded as %v", d)
	}
	d |= 1<<2 | 1<<14
	if !d.Hit(2) || d.Hit(0) || d.Hits() != 0b0100 || !d.SingleStep() {
		t.Errorf("B2|BS decoded as %v", d)
	}
	if DR6(1<<13).String() != "dr6{BD}" || d.String() != "dr6{B2 BS}" {
		t.Errorf("strings: %v %v", DR6(1<<13), d)
	}
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{
		"rw-": {Kind: ReadWrite},
		"-w-": {Kind: Write},
		"--x": {Kind: Exec},
		"r--": {Kind: ReadWrite, ReadOnly: true},
	} {
		got, err := ParseMode(s)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), s)
		}
	}
	for _, s := range []string{"", "rwx", "-wx", "w", "rw", "RW-", "---"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) accepted", s)
		}
	}
}

func TestModeWants(t *testing.T) {
	ro, _ := ParseMode("r--")
	rw, _ := ParseMode("rw-")
	w, _ := ParseMode("-w-")
	x, _ := ParseMode("--x")
	if ro.Wants(true) || !ro.Wants(false) || !rw.Wants(true) || !rw.Wants(false) ||
		!w.Wants(true) || w.Wants(false) || !x.Wants(false) {
		t.Error("Wants filters wrongly")
	}
}

func TestValidate(t *testing.T) {
	good := []struct {
		addr uint64
		n    int
		k    Kind
	}{
		{0x1000, 1, Exec}, {0x1001, 1, Write}, {0x1002, 2, ReadWrite},
		{0x1004, 4, Write}, {0x1008, 8, Write}, {0x7fff_ffff_eff8, 8, ReadWrite},
	}
	for _, c := range good {
		if err := Validate(c.addr, c.n, c.k); err != nil {
			t.Errorf("Validate(%#x, %d, %v): %v", c.addr, c.n, c.k, err)
		}
	}
	bad := []struct {
		addr uint64
		n    int
		k    Kind
	}{
		{0x1001, 2, Write}, {0x1002, 4, Write}, {0x1004, 8, Write}, // misaligned
		{0x1000, 3, Write}, {0x1000, 16, Write}, {0x1000, 0, Write}, // no encoding
		{0x1000, 4, Exec}, {0x1000, 2, Exec}, // exec is length 1
		{0x1000, 1, Kind(2)},              // I/O breakpoints
		{0xffff_ffff_8100_0000, 8, Write}, // kernel half
	}
	for _, c := range bad {
		err := Validate(c.addr, c.n, c.k)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%#x, %d, %v) = %v, want ErrInvalid", c.addr, c.n, c.k, err)
		}
	}
}

func TestSplit(t *testing.T) {
	cases := []struct {
		addr, n uint64
		want    []Range
	}{
		{0x1000, 0, nil},
		{0x1000, 8, []Range{{0x1000, 8}}},
		{0x1000, 16, []Range{{0x1000, 8}, {0x1008, 8}}},
		{0x1001, 7, []Range{{0x1001, 1}, {0x1002, 2}, {0x1004, 4}}},
		{0x1003, 4, []Range{{0x1003, 1}, {0x1004, 2}, {0x1006, 1}}},
		{0x1006, 4, []Range{{0x1006, 2}, {0x1008, 2}}},
		{0x1004, 12, []Range{{0x1004, 4}, {0x1008, 8}}},
		{0x1000, 3, []Range{{0x1000, 2}, {0x1002, 1}}},
		{^uint64(0), 2, nil},
	}
	for _, c := range cases {
		got := Split(c.addr, c.n)
		if len(got) != len(c.want) {
			t.Errorf("Split(%#x, %d) = %v, want %v", c.addr, c.n, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Split(%#x, %d) = %v, want %v", c.addr, c.n, got, c.want)
				break
			}
		}
	}
	// Exhaustively: pieces are valid, contiguous, exact, and as few as the
	// minimum found by dynamic programming over all covers.
	for addr := uint64(0x2000); addr < 0x2010; addr++ {
		for n := uint64(1); n <= 40; n++ {
			got := Split(addr, n)
			next := addr
			for _, r := range got {
				if r.Addr != next || Validate(r.Addr, r.Len, Write) != nil {
					t.Fatalf("Split(%#x, %d) = %v: bad piece %v", addr, n, got, r)
				}
				next += uint64(r.Len)
			}
			if next != addr+n {
				t.Fatalf("Split(%#x, %d) = %v ends at %#x", addr, n, got, next)
			}
			if m := minCover(addr, n); len(got) != m {
				t.Fatalf("Split(%#x, %d) has %d pieces, minimum is %d", addr, n, len(got), m)
			}
		}
	}
}

// minCover is the fewest aligned pieces covering [addr, addr+n), by dynamic
// programming over every choice of piece at every position.
func minCover(addr, n uint64) int {
	best := make([]int, n+1) // best[i]: pieces to cover [addr+i, addr+n)
	for i := int(n) - 1; i >= 0; i-- {
		best[i] = 1 << 30
		for _, s := range []uint64{1, 2, 4, 8} {
			if (addr+uint64(i))%s == 0 && uint64(i)+s <= n {
				best[i] = min(best[i], 1+best[uint64(i)+s])
			}
		}
	}
	return best[0]
}

func TestSlots(t *testing.T) {
	var s Slots
	flex := func(c uint64) Request { return Request{Addr: 0x1000 + 8*c, Len: 8, Kind: Write, Cookie: c} }
	for c := range uint64(4) {
		i, err := s.Alloc(flex(c))
		if err != nil || i != int(c) {
			t.Fatalf("Alloc(flex %d) = %d, %v", c, i, err)
		}
	}
	_, err := s.Alloc(flex(9))
	if !errors.Is(err, ErrNoSlot) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fifth flexible Alloc: %v, want ErrNoSlot/ENOSPC", err)
	}
	// A pinned request evicts a flexible one and reports it.
	p := Request{Addr: 0x2000, Len: 4, Kind: ReadWrite, Pinned: true, Cookie: 100}
	i, err := s.Alloc(p)
	if err != nil {
		t.Fatalf("pinned Alloc: %v", err)
	}
	ev := s.Evicted()
	if len(ev) != 1 || ev[0].Cookie != uint64(i) || s.Find(100) != i || s.Find(uint64(i)) != -1 {
		t.Fatalf("pinned took slot %d, evicted %+v", i, ev)
	}
	if s.Evicted() != nil {
		t.Fatal("Evicted did not forget")
	}
	// Three more pinned requests fill the thread; the fifth has nowhere to go.
	for c := uint64(101); c < 104; c++ {
		if _, err := s.Alloc(Request{Addr: 0x3000 + c, Len: 1, Kind: Write, Pinned: true, Cookie: c}); err != nil {
			t.Fatalf("pinned %d: %v", c, err)
		}
	}
	if len(s.Evicted()) != 3 || s.Len() != 4 {
		t.Fatal("three more pinned requests should have evicted three flexible ones")
	}
	if _, err := s.Alloc(Request{Addr: 0x4000, Len: 1, Kind: Write, Pinned: true}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fifth pinned Alloc: %v, want ENOSPC", err)
	}
	// Freeing makes room again; double free is an error.
	if err := s.Free(i); err != nil {
		t.Fatal(err)
	}
	if err := s.Free(i); err == nil {
		t.Fatal("double Free accepted")
	}
	if j, err := s.Alloc(flex(7)); err != nil || j != i {
		t.Fatalf("Alloc after Free = %d, %v; want %d", j, err, i)
	}
	// Invalid requests never take a slot.
	var e Slots
	if _, err := e.Alloc(Request{Addr: 0x1001, Len: 4, Kind: Write}); !errors.Is(err, ErrInvalid) || e.Len() != 0 {
		t.Fatalf("misaligned Alloc: %v", err)
	}
}

func TestSlotsDR7AndMatch(t *testing.T) {
	var s Slots
	s.Alloc(Request{Addr: 0x1000, Len: 8, Kind: ReadWrite})
	s.Alloc(Request{Addr: 0x2004, Len: 4, Kind: Write})
	s.Alloc(Request{Addr: 0x3000, Len: 1, Kind: Exec})
	want := DR7(0b010101 | 1<<8 | 0b1011<<16 | 0b1101<<20 | 0b0000<<24)
	if got := s.DR7(); got != want {
		t.Fatalf("DR7 = %#x (%v), want %#x", uint64(got), got, uint64(want))
	}
	if err := s.Free(0); err != nil {
		t.Fatal(err)
	}
	if got := s.DR7(); got.Enabled(0) || !got.Enabled(1) || got.RW(0) != 0 {
		t.Fatalf("after Free(0): %v", got)
	}
	if m := s.Match(0x2006, 2); m != 0b0010 {
		t.Errorf("Match(0x2006, 2) = %04b", m)
	}
	if m := s.Match(0x2000, 4); m != 0 {
		t.Errorf("Match(0x2000, 4) = %04b, want none", m)
	}
}
