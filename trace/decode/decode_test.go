package decode

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func decodeLog(t *testing.T, log string, opt Options) []byte {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	w := NewWriter(&out, opt)
	rd := trace.NewReader(f)
	for {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func tracker(t *testing.T, file string, b regmap.Binding) *regmap.Tracker {
	t.Helper()
	m, err := regmap.Load(filepath.Join("../../regmap/testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	b.Map = m
	return regmap.NewTracker(b)
}

// TestGolden decodes the device fixtures' logs (the example driver's, with
// the device described in each register-map format, and e2e's device.c's),
// a log of every extension, the recording of testdata/sysproc.c (system
// calls on the device's registers from a process, its thread, its fork
// child and the program the child executes), without and with register
// maps, and the hand-written kernel log with NVIDIA register names. The logs' files are renamed away, so that PCs are named
// by file and offset on any machine.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden, log string
		regs        *regmap.Tracker
		symbols     bool
	}{
		{"example.golden", "example.log", nil, true},
		{"example-text.golden", "example.log", tracker(t, "device.regs", regmap.Binding{}), true},
		{"example-header.golden", "example.log", tracker(t, "device.h", regmap.Binding{}), true},
		{"example-svd.golden", "example.log", tracker(t, "device.svd", regmap.Binding{Select: "/dev/shm/*", HasBase: true, Base: 0}), true},
		{"device.golden", "device.log", nil, true},
		{"extensions.golden", "extensions.log", nil, true},
		{"sysproc.golden", "sysproc.log", nil, true},
		{"sysproc-text.golden", "sysproc.log", tracker(t, "device.regs", regmap.Binding{}), true},
		{"sysproc-header.golden", "sysproc.log", tracker(t, "device.h", regmap.Binding{}), true},
		{"kernel.golden", "kernel.log", nil, false},
		{"kernel-nv.golden", "kernel.log", tracker(t, "nv.h", regmap.Binding{Select: "1"}), false},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var opt Options
			if tc.symbols {
				opt.Symbols = symbols.NewSymbolizer()
			}
			if tc.regs != nil {
				opt.Regs = []*regmap.Tracker{tc.regs}
			}
			got := decodeLog(t, filepath.Join("../testdata", tc.log), opt)
			testenv.Golden(t, filepath.Join("testdata", tc.golden), string(got), *update)
		})
	}
}

// TestRangeNames names the registers of the ranges of SYS records: whole
// registers, ranges that cut registers at either end or lie in one, ranges
// that start or end between registers, ranges with no register, arrays of
// the text format and of a C header (unbounded).
func TestRangeNames(t *testing.T) {
	load := func(file string) *regmap.Map {
		m, err := regmap.Load(filepath.Join("../../regmap/testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	text, header := load("device.regs"), load("device.h")
	for _, tc := range []struct {
		m         *regmap.Map
		addr, len uint64
		want      string
	}{
		{text, 0x0, 4, "ID"},
		{text, 0x4, 8, "CTRL..DATA"},
		{text, 0x6, 6, "CTRL+2..DATA"},
		{text, 0x4, 5, "CTRL..DATA+0"},
		{text, 0x4, 2, "CTRL..CTRL+1"},
		{text, 0x5, 2, "CTRL+1..CTRL+2"},
		{text, 0x7, 1, "CTRL+3..CTRL+3"},
		{text, 0x100, 0x40, "QUEUE[0]..QUEUE[3]"},
		{text, 0x108, 8, ""}, // between QUEUE[0] and QUEUE[1]
		{text, 0x18, 0xf0, "QUEUE[0]"},
		{text, 0x14, 0x100, "RESULT..QUEUE[1]+3"},
		{text, 0x12, 0x1000, "STATUS+2..QUEUE[3]"},
		{text, 0x200, 0x10, ""},
		{text, 0x0, 0x1000, "ID..QUEUE[3]"},
		{header, 0x140, 0x40, "EXDEV_QUEUE(4)..EXDEV_QUEUE(7)"},
		{header, 0x18, 8, "EXDEV_INT_STATUS..EXDEV_INT_MASK"},
		{header, 0xf0, 0x20, "EXDEV_QUEUE(0)"},
		{header, 0x20, 0x10, ""},
	} {
		if got := rangeNames(tc.m, tc.addr, tc.len, false); got != tc.want {
			t.Errorf("%s %#x+%#x: %q, want %q", tc.m.Format, tc.addr, tc.len, got, tc.want)
		}
	}
}

// TestWatchRange names the part of a watched variable a system call
// reached.
func TestWatchRange(t *testing.T) {
	m := &mapInfo{name: "state", phys: 0x601080, len: 16}
	for _, tc := range []struct {
		phys, len uint64
		want      string
	}{
		{0x601080, 16, "state"},
		{0x601080, 0x1000, "state"},
		{0x601080, 4, "state..state+3"},
		{0x601084, 8, "state+4..state+11"},
		{0x601088, 1, "state+8"},
	} {
		if got := watchRange(m, tc.phys, tc.len); got != tc.want {
			t.Errorf("%#x+%d: %q, want %q", tc.phys, tc.len, got, tc.want)
		}
	}
}
