package tracer

import (
	"strings"
	"testing"
)

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"/dev/mem", "/dev/mem", true},
		{"/dev/uio*", "/dev/uio0", true},
		{"/dev/uio*", "/dev/uio/x", false},
		{"/dev/vfio/*", "/dev/vfio/12", true},
		{"/dev/vfio/devices/*", "/dev/vfio/devices/vfio0", true},
		{`anon_inode:\[vfio-device\]`, "anon_inode:[vfio-device]", true},
		{`anon_inode:\[vfio-device\]`, "anon_inode:[eventfd]", false},
		{"/sys/bus/pci/devices/*/resource*", "/sys/bus/pci/devices/0000:00:02.0/resource0", true},
		{"/sys/devices/**/resource*", "/sys/devices/pci0000:00/0000:00:02.0/resource2_wc", true},
		{"/sys/devices/**/resource*", "/sys/devices/resource0", true}, // ** matches zero elements
		{"/sys/devices/**/resource*", "/sys/devices/a/b/c/config", false},
		{"/dev/shm/*", "/dev/shm/dev0", true},
		{"/dev/shm/*", "/dev/shmx/dev0", false},
		{"**", "/anything/at/all", true},
	} {
		if got := MatchGlob(tc.glob, tc.name); got != tc.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
	if err := ValidateGlob("/dev/[x"); err == nil {
		t.Error("ValidateGlob accepted a malformed pattern")
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		err  string
	}{
		{"0x1000+4096", Range{0x1000, 4096}, ""},
		{"4096+0x10", Range{4096, 16}, ""},
		{"0x7f0000000000+0x1000", Range{0x7f0000000000, 0x1000}, ""},
		{"0x1000", Range{}, "want ADDR+LEN"},
		{"zz+1", Range{}, "address"},
		{"0x1000+q", Range{}, "length"},
		{"0x1000+0", Range{}, "zero"},
		{"0xffffffffffffffff+2", Range{}, "beyond"},
	} {
		got, err := ParseRange(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRange(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestPieces(t *testing.T) {
	m := Mapping{Start: 0x10000, End: 0x14000, Path: "/dev/shm/dev0", Inode: 7}
	s := Selection{Globs: []string{"/dev/shm/*"}}
	if got := s.Pieces(&m); len(got) != 1 || got[0] != (Range{0x10000, 0x4000}) {
		t.Errorf("glob: %v", got)
	}
	s = Selection{Ranges: []Range{{0xf000, 0x2000}, {0x13800, 0x10000}, {0x20000, 1}}}
	got := s.Pieces(&m)
	want := []Range{{0x10000, 0x1000}, {0x13800, 0x800}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ranges: got %v, want %v", got, want)
	}
	anon := Mapping{Start: 0x10000, End: 0x14000}
	if got := (&Selection{Globs: []string{"**"}}).Pieces(&anon); len(got) != 0 {
		t.Errorf("a glob selected anonymous memory: %v", got)
	}
}

func TestPhysBase(t *testing.T) {
	for _, tc := range []struct {
		m    Mapping
		want uint64
	}{
		{Mapping{Start: 0x7f0000000000, End: 0x7f0000001000}, 0x7f0000000000},                                             // anonymous: virtual
		{Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Path: "/dev/mem", Inode: 5, Offset: 0xfed00000}, 0xfed00000}, // physical
		{Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Path: "/tmp/f", Inode: 5, Offset: 0x2000}, 0x2000},           // file offset
	} {
		if got := physBase(&tc.m, "/proc/self").phys; got != tc.want {
			t.Errorf("physBase(%+v) = %#x, want %#x", tc.m, got, tc.want)
		}
	}
}
