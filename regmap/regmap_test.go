package regmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/trace"
)

// describe renders a map's registers one per line, for exact comparisons.
func describe(m *Map) []string {
	var out []string
	for _, r := range m.Registers() {
		s := fmt.Sprintf("%#x %s w%d %v", r.Addr, r.Name, r.Width, r.Access)
		for _, f := range r.Fields {
			s += fmt.Sprintf(" %s[%d:%d]", f.Name, f.Msb, f.Lsb)
			for _, e := range f.Enums {
				s += fmt.Sprintf(" %s=%d", e.Name, e.Value)
				if e.Access != ReadWrite {
					s += "/" + e.Access.String()
				}
			}
		}
		out = append(out, s)
	}
	for _, a := range m.Arrays() {
		out = append(out, fmt.Sprintf("%#x %s(n) stride %#x", a.Addr, a.Name, a.Stride))
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func load(t *testing.T, name string) *Map {
	t.Helper()
	m, err := Load("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestText(t *testing.T) {
	m := load(t, "device.regs")
	if m.Format != "text" || m.Name != "example-device" || m.Absolute {
		t.Errorf("format %q name %q absolute %v", m.Format, m.Name, m.Absolute)
	}
	sameLines(t, "registers", describe(m), []string{
		"0x0 ID w32 ro",
		"0x4 CTRL w32 rw EN[0:0] MODE[2:1] OFF=0 SLOW=1 FAST=2",
		"0x8 DATA w32 rw",
		"0xc DOORBELL w32 wo RING[0:0]",
		"0x10 STATUS w32 rw DONE[0:0] ERR[7:7] COUNT[15:8]",
		"0x14 RESULT w32 ro",
		"0x100 QUEUE[0] w64 rw HEAD[15:0] TAIL[31:16]",
		"0x110 QUEUE[1] w64 rw HEAD[15:0] TAIL[31:16]",
		"0x120 QUEUE[2] w64 rw HEAD[15:0] TAIL[31:16]",
		"0x130 QUEUE[3] w64 rw HEAD[15:0] TAIL[31:16]",
	})
	if d := m.Registers()[0].Desc; d != `"MMIO"` {
		t.Errorf("ID description %q", d)
	}
}

func TestHeader(t *testing.T) {
	m := load(t, "device.h")
	if m.Format != "header" || m.Name != "device" || m.Absolute {
		t.Errorf("format %q name %q absolute %v", m.Format, m.Name, m.Absolute)
	}
	sameLines(t, "registers", describe(m), []string{
		"0x0 EXDEV_ID w0 rw",
		"0x4 EXDEV_CTRL w0 rw EN[0:0] MODE[2:1] OFF=0 SLOW=1 FAST=2",
		"0x8 EXDEV_DATA w0 rw",
		"0xc EXDEV_DOORBELL w0 rw RING[0:0]",
		"0x10 EXDEV_STATUS w0 rw DONE[0:0] ERR[7:7] COUNT[15:8]",
		"0x14 EXDEV_RESULT w0 rw",
		"0x18 EXDEV_INT_STATUS w0 rw",
		"0x1c EXDEV_INT_MASK w0 rw",
		"0x100 EXDEV_QUEUE(n) stride 0x10",
	})
}

func TestSVD(t *testing.T) {
	m := load(t, "device.svd")
	if m.Format != "svd" || m.Name != "EXDEV" || !m.Absolute || m.Origin != 0x40010000 {
		t.Errorf("format %q name %q absolute %v origin %#x", m.Format, m.Name, m.Absolute, m.Origin)
	}
	var want []string
	for _, p := range []struct {
		name string
		base uint64
	}{{"DEV0", 0x40010000}, {"DEV1", 0x40011000}} {
		for _, l := range []string{
			"0x0 ID w32 ro",
			"0x4 CTRL w32 rw EN[0:0] MODE[2:1] OFF=0 SLOW=1 FAST=2",
			"0x8 DATA w32 rw",
			"0xc DOORBELL w32 wo RING[0:0]",
			"0x10 STATUS w32 rw DONE[0:0] ERR[7:7] COUNT[15:8] IDLE=0/ro IDLE=1/ro",
			"0x14 RESULT w32 ro",
			"0x18 SCRATCH_A w32 rw",
			"0x1c SCRATCH_B w32 rw",
			"0x100 QUEUE[0].HEAD w16 rw", "0x102 QUEUE[0].TAIL w16 rw",
			"0x110 QUEUE[1].HEAD w16 rw", "0x112 QUEUE[1].TAIL w16 rw",
			"0x120 QUEUE[2].HEAD w16 rw", "0x122 QUEUE[2].TAIL w16 rw",
			"0x130 QUEUE[3].HEAD w16 rw", "0x132 QUEUE[3].TAIL w16 rw",
		} {
			var off uint64
			var rest string
			fmt.Sscanf(l, "%v", &off)
			rest = l[strings.IndexByte(l, ' ')+1:]
			want = append(want, fmt.Sprintf("%#x %s.%s", p.base+off, p.name, rest))
		}
	}
	sameLines(t, "registers", describe(m), want)
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"<?xml version=\"1.0\"?><device/>", "svd"},
		{"\n  <device>", "svd"},
		{"/* x */\n#define A 0x4\n", "header"},
		{"# define A 0x4\n", "header"},
		{"# a comment\n0x0 32 ID\n", "text"},
	} {
		if got := Sniff([]byte(tc.text)); got != tc.want {
			t.Errorf("Sniff(%q) = %s, want %s", tc.text, got, tc.want)
		}
	}
}

func le(v uint64, n int) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b[:n]
}

// TestDecode checks the demmio-style description of accesses: fields,
// enumerated values, unknown bits, direction-specific registers, partial
// and spanning accesses, and addresses outside every register.
func TestDecode(t *testing.T) {
	text := load(t, "device.regs")
	hdr := load(t, "device.h")
	svd := load(t, "device.svd")
	for _, tc := range []struct {
		m     *Map
		addr  uint64
		value uint64
		width int
		write bool
		want  string
	}{
		{text, 0x0, 0x4d4d494f, 4, false, "ID => 0x4d4d494f"},
		{text, 0x4, 0x5, 4, true, "CTRL <= 0x5 {EN | MODE=FAST}"},
		{text, 0x4, 0x0, 4, false, "CTRL => 0x0 {MODE=OFF}"},
		{text, 0x4, 0x7, 4, false, "CTRL => 0x7 {EN | MODE=0x3}"},
		{text, 0x4, 0x80000001, 4, false, "CTRL => 0x80000001 {EN | MODE=OFF | 0x80000000}"},
		{text, 0x10, 0x381, 4, false, "STATUS => 0x381 {DONE | ERR | COUNT=0x3}"},
		{text, 0x11, 0x3, 1, false, "STATUS+1 => 0x3 {COUNT=0x3}"},
		{text, 0x10, 0x1, 1, false, "STATUS => 0x1 {DONE}"},
		{text, 0x10, 0x2a00000001, 8, false, "STATUS => 0x1 {DONE}, RESULT => 0x2a"},
		{text, 0x18, 0x1, 4, true, "0x18 <= 0x1"},
		{text, 0x120, 0x00050003, 8, true, "QUEUE[2] <= 0x50003 {HEAD=0x3 | TAIL=0x5}"},
		{hdr, 0x4, 0x5, 4, true, "EXDEV_CTRL <= 0x5 {EN | MODE=FAST}"},
		{hdr, 0x10, 0x281, 4, false, "EXDEV_STATUS => 0x281 {DONE | ERR | COUNT=0x2}"},
		{hdr, 0xc, 0x1, 4, true, "EXDEV_DOORBELL <= 0x1 {RING}"},
		{hdr, 0x130, 0x7, 4, true, "EXDEV_QUEUE(3) <= 0x7"},
		{hdr, 0x18, 0x200000001, 8, false, "EXDEV_INT_STATUS => 0x1, EXDEV_INT_MASK => 0x2"},
		// Registers of unknown width: an access at the last one covers up
		// to 8 bytes; an address 4 bytes in is outside it.
		{hdr, 0x1c, 0x300000001, 8, false, "EXDEV_INT_MASK => 0x300000001"},
		{hdr, 0x1e, 0x1, 1, false, "EXDEV_INT_MASK+2 => 0x1"},
		{hdr, 0x20, 0x1, 4, false, "0x20 => 0x1"},
		{svd, 0x40011004, 0x2, 4, true, "DEV1.CTRL <= 0x2 {MODE=SLOW}"},
		{svd, 0x40010010, 0x1, 4, false, "DEV0.STATUS => 0x1 {DONE | COUNT=IDLE}"},
		{svd, 0x40010010, 0x1, 4, true, "DEV0.STATUS <= 0x1 {DONE}"},
		{svd, 0x40010112, 0x9, 2, true, "DEV0.QUEUE[1].TAIL <= 0x9"},
		{svd, 0x4001001c, 0xff, 4, true, "DEV0.SCRATCH_B <= 0xff"},
	} {
		if got := tc.m.Decode(tc.addr, le(tc.value, tc.width), tc.write); got != tc.want {
			t.Errorf("%s: Decode(%#x, %#x/%d, write %v) = %q, want %q", tc.m.Format, tc.addr, tc.value, tc.width, tc.write, got, tc.want)
		}
	}
}

// TestDirection checks two registers at one offset, one read-only and
// one write-only, as ICR/ICS pairs are.
func TestDirection(t *testing.T) {
	m, err := ParseText([]byte("0x0 32 ICR ro\n0x0 32 ICS wo\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, w := m.RegisterName(0, false), m.RegisterName(0, true); r != "ICR" || w != "ICS" {
		t.Errorf("read names %q, write names %q", r, w)
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"text: bad width", "0x0 33 A\n"},
		{"text: bad offset", "zz 32 A\n"},
		{"text: field outside", "0x0 8 A B[9]\n"},
		{"text: bad field", "0x0 32 A B[x]\n"},
		{"text: bad enum", "0x0 32 A B[1:0]{X}\n"},
		{"text: fields first", "  A[0]\n"},
		{"text: nothing", "# empty\n"},
		{"svd: not xml", "<device><peripherals><peripheral>"},
		{"svd: bad base", "<device><peripherals><peripheral><name>P</name><baseAddress>zz</baseAddress></peripheral></peripherals></device>"},
		{"svd: unknown derivedFrom", `<device><peripherals><peripheral derivedFrom="Q"><name>P</name></peripheral></peripherals></device>`},
		{"svd: huge dim", "<device><peripherals><peripheral><name>P</name><baseAddress>0</baseAddress><registers><register><name>R%s</name><dim>99999999</dim><dimIncrement>4</dimIncrement><addressOffset>0</addressOffset></register></registers></peripheral></peripherals></device>"},
		{"header: no registers", "#define COUNT 4\n"},
	} {
		_, err := Parse([]byte(tc.text))
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: error %v, want one wrapping ErrFormat", tc.name, err)
		}
	}
}

// TestTracker places accesses of a log in registers: by map id, by NAME
// glob, past watches, inside a PCI BAR, and with an explicit base.
func TestTracker(t *testing.T) {
	text := load(t, "device.regs")
	svd := load(t, "device.svd")
	log := []string{
		"PCIDEV 0300 10de1234 10 fd000000 e000000c 0 0 0 0 0 1000000 10000000 0 0 0 0 0 nvidia",
		"MAP 1.000000 1 0xfd001000 0x7f0000001000 0x1000 0x0 10",
		"NAME 1 /sys/bus/pci/devices/0000:03:00.0/resource0",
		"MAP 1.000000 2 0x2000 0x7f0000002000 0x1000 0x0 10",
		"NAME 2 /dev/shm/sim",
		"MAP 1.000000 3 0x601040 0x601040 0x4 0x0 10",
		"NAME 3 counter",
		"MAP 1.000000 4 0x7f0000005000 0x7f0000005000 0x1000 0x0 10",
		"NAME 4 [anon]",
	}
	type access struct {
		id   uint32
		phys uint64
	}
	for _, tc := range []struct {
		b    Binding
		acc  []access
		want []string
	}{
		{Binding{Map: text}, []access{{1, 0xfd000004}, {2, 0x2008}, {3, 0x601040}, {4, 0x7f0000005010}},
			[]string{"CTRL", "-", "-", "STATUS"}},
		{Binding{Map: text, Select: "2"}, []access{{1, 0xfd000004}, {2, 0x10}},
			[]string{"-", "STATUS"}},
		{Binding{Map: text, Select: "/dev/shm/*"}, []access{{2, 0x14}, {4, 0x7f0000005000}},
			[]string{"RESULT", "-"}},
		{Binding{Map: text, Select: "counter"}, []access{{3, 0x601044}},
			[]string{"CTRL"}},
		{Binding{Map: text, Select: "2", HasBase: true, Base: 0x2000}, []access{{2, 0x2010}},
			[]string{"STATUS"}},
		{Binding{Map: svd}, []access{{1, 0x40011004}},
			[]string{"DEV1.CTRL"}},
		{Binding{Map: svd, HasBase: true, Base: 0xfd000000}, []access{{1, 0xfd000004}, {1, 0xfd001010}},
			[]string{"DEV0.CTRL", "DEV1.STATUS"}},
	} {
		tr := NewTracker(tc.b)
		for _, l := range log {
			r, ok, err := trace.ParseLine(l)
			if !ok || err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			tr.Observe(&r)
		}
		var got []string
		for _, a := range tc.acc {
			r := trace.Record{Kind: trace.KindRead, Width: 4, MapID: a.id, Phys: a.phys}
			n := tr.Name(&r)
			if n == "" {
				n = "-"
			}
			got = append(got, n)
		}
		sameLines(t, fmt.Sprintf("binding %s base %v/%#x", tc.b.Select, tc.b.HasBase, tc.b.Base), got, tc.want)
	}
}

// FuzzParse checks that no input makes a reader panic, and that a map is
// returned exactly when there is no error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0x0 32 A B[1:0]{X=1}\n", "#define A 0x4\n#define A_B BIT(3)\n", "<device><peripherals/></device>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if (m == nil) == (err == nil) {
			t.Fatalf("map %v and error %v", m, err)
		}
		if m != nil {
			m.Decode(0, []byte{1, 2, 3, 4}, false)
		}
	})
}
