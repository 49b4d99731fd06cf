package report

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func summarize(t testing.TB, path string, cfg Config) *Summary {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := NewCollector(cfg)
	if err := c.AddLog(f); err != nil {
		t.Fatal(err)
	}
	return c.Summary()
}

func tracker(t testing.TB, file string, b regmap.Binding) *regmap.Tracker {
	t.Helper()
	m, err := regmap.Load(filepath.Join("../../regmap/testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	b.Map = m
	return regmap.NewTracker(b)
}

// TestGolden writes the text summary of the device fixtures' logs (the
// example driver's, its files renamed away; e2e's device.c's, with vector
// accesses and two threads), of a log of every extension (watches, X, TP,
// RV, WV, UNKNOWN, SYS, PROC, marks), of the recording of
// trace/testdata/sysproc.c (system calls on the device's registers from a
// process, its thread, a fork child and the program it executes) and of
// the hand-written kernel log, with and without register names. The logs' files are renamed away, so that PCs are
// named by file and offset on any machine.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden, log, regsText string
		regs                  *regmap.Tracker
		symbols               bool
	}{
		{"example.txt", "example.log", "", nil, true},
		{"example-regs.txt", "example.log", "device.regs", tracker(t, "device.regs", regmap.Binding{}), true},
		{"device.txt", "device.log", "", nil, true},
		{"extensions.txt", "extensions.log", "", nil, true},
		{"sysproc.txt", "sysproc.log", "", nil, true},
		{"sysproc-regs.txt", "sysproc.log", "device.regs", tracker(t, "device.regs", regmap.Binding{}), true},
		{"kernel.txt", "kernel.log", "", nil, false},
		{"kernel-nv.txt", "kernel.log", "nv.h on map 1", tracker(t, "nv.h", regmap.Binding{Select: "1"}), false},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var cfg Config
			if tc.symbols {
				cfg.Symbols = symbols.NewSymbolizer()
			}
			if tc.regs != nil {
				cfg.Regs = []*regmap.Tracker{tc.regs}
			}
			s := summarize(t, filepath.Join("../testdata", tc.log), cfg)
			var out bytes.Buffer
			if err := WriteText(&out, s, TextOptions{PCs: 3, Regs: tc.regsText}); err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", tc.golden), out.String(), *update)
		})
	}
}

// access makes an access record.
func access(kind trace.Kind, t int64, id uint32, phys, value uint64, width int, pc uint64, tid int32) trace.Record {
	r := trace.Record{Kind: kind, Time: t, MapID: id, Phys: phys, PC: pc, TID: tid}
	r.SetValue(value, width)
	return r
}

// TestCounts checks the statistics against a log whose every number is
// known: per register, per map group (a map mapped twice), per thread, per
// watch, per event.
func TestCounts(t *testing.T) {
	c := NewCollector(Config{})
	recs := []trace.Record{
		{Kind: trace.KindMap, Time: 1e9, MapID: 1, Phys: 0x1000, Virt: 0x7f0000000000, Len: 0x100},
		{Kind: trace.KindName, MapID: 1, Text: "/dev/uio0"},
		access(trace.KindWrite, 1e9+1, 1, 0x1004, 7, 4, 0x400100, 10),
		access(trace.KindRead, 1e9+2, 1, 0x1004, 7, 4, 0x400104, 11),
		access(trace.KindRead, 1e9+3, 1, 0x1004, 9, 4, 0x400104, 11),
		access(trace.KindRead, 1e9+4, 1, 0x1005, 1, 1, 0x400108, 11),
		{Kind: trace.KindUnmap, Time: 2e9, MapID: 1},
		{Kind: trace.KindMap, Time: 3e9, MapID: 2, Phys: 0x1000, Virt: 0x7f0000004000, Len: 0x100},
		{Kind: trace.KindName, MapID: 2, Text: "/dev/uio0"},
		access(trace.KindWrite, 3e9+1, 2, 0x1004, 8, 4, 0x400100, 10),
		{Kind: trace.KindMap, Time: 3e9, MapID: 3, Phys: 0x601040, Virt: 0x601040, Len: 4},
		{Kind: trace.KindName, MapID: 3, Text: "counter"},
		access(trace.KindWrite, 3e9+2, 3, 0x601040, 1, 4, 0x400200, 10),
		{Kind: trace.KindExec, Time: 3e9 + 3, MapID: 3, Phys: 0x601040, PC: 0x601040, TID: 10},
		{Kind: trace.KindEvent, Time: 4e9, TID: 10, Text: "demo:irq"},
		{Kind: trace.KindEvent, Time: 5e9, TID: 10, Text: "demo:irq"},
		{Kind: trace.KindMark, Time: 5e9 + 1, Text: "done"},
	}
	for i := range recs {
		c.Add(&recs[i])
	}
	s := c.Summary()
	if s.Reads != 3 || s.Writes != 3 || s.Execs != 1 || s.EventCount != 2 || s.MarkCount != 1 {
		t.Errorf("totals R %d W %d X %d TP %d MARK %d", s.Reads, s.Writes, s.Execs, s.EventCount, s.MarkCount)
	}
	if s.Start != 1e9 || s.End != 5e9+1 || s.ActiveStart != 1e9+1 || s.ActiveEnd != 5e9+1 {
		t.Errorf("span %d-%d, active %d-%d", s.Start, s.End, s.ActiveStart, s.ActiveEnd)
	}
	if len(s.Maps) != 2 {
		t.Fatalf("%d map groups, want 2 (uio0 mapped twice, and a watch)", len(s.Maps))
	}
	uio, w := s.Maps[0], s.Maps[1]
	if fmt.Sprint(uio.IDs) != "[1 2]" || uio.Reads != 3 || uio.Writes != 2 || uio.Watch || !w.Watch || w.Execs != 1 {
		t.Errorf("groups %+v %+v", uio, w)
	}
	regs := uio.Registers()
	if len(regs) != 2 || regs[0].Offset != 4 || regs[1].Offset != 5 {
		t.Fatalf("registers %+v", regs)
	}
	r := regs[0]
	nv, more := r.Values()
	pcs, approx := r.PCs()
	if r.Reads != 2 || r.Writes != 2 || nv != 3 || more || r.First.String() != "0x7" || r.Last.String() != "0x8" || widths(r.Widths) != "4" {
		t.Errorf("register 4: %+v, %d values", r, nv)
	}
	if fmt.Sprint(pcs) != "[{4194560 2} {4194564 2}]" || approx {
		t.Errorf("PCs %v (approximate %v)", pcs, approx)
	}
	if n, _ := uio.Threads(); n != 2 {
		t.Errorf("uio0 accessed by %d threads, want 2", n)
	}
	if len(s.Threads) != 2 || s.Threads[0].TID != 10 || s.Threads[0].Writes != 3 || s.Threads[0].Events != 2 || s.Threads[0].Execs != 1 {
		t.Errorf("threads %+v", s.Threads[0])
	}
	if len(s.Events) != 1 || s.Events[0].Count != 2 || rate(2, s.Events[0].Last-s.Events[0].First) != "1.0/s" {
		t.Errorf("events %+v", s.Events)
	}
}

// TestLimits feeds far more registers, values, PCs, maps, threads and
// events than the limits allow: the counts stop where the limits say, and
// the report says so.
func TestLimits(t *testing.T) {
	lim := Limits{Values: 8, Registers: 16, PCs: 4, Maps: 3, Threads: 5, Events: 2}
	c := NewCollector(Config{Limits: lim})
	for id := uint32(1); id <= 10; id++ {
		m := trace.Record{Kind: trace.KindMap, MapID: id, Phys: uint64(id) << 20, Len: 1 << 20}
		c.Add(&m)
	}
	const n = 200000
	for i := 0; i < n; i++ {
		id := uint32(i%10 + 1)
		r := access(trace.KindRead, int64(i), id, uint64(id)<<20|uint64(i%64)*4, uint64(i), 4, uint64(0x400000+i%100), int32(i%50))
		c.Add(&r)
		e := trace.Record{Kind: trace.KindEvent, Time: int64(i), Text: fmt.Sprintf("p:e%d", i%7)}
		c.Add(&e)
	}
	s := c.Summary()
	if len(s.Maps) != 4 || !s.OtherMaps || !s.Maps[3].Other || s.Maps[3].NumIDs != 7 {
		t.Errorf("%d map groups (other %v), want 3 and the rest", len(s.Maps), s.OtherMaps)
	}
	m := s.Maps[0]
	// Map 1 gets every tenth access: 32 offsets in turn, half of them kept.
	if len(m.regs) != 16 || m.Lost != n/10/2 {
		t.Errorf("map 1: %d registers, %d lost accesses", len(m.regs), m.Lost)
	}
	for _, r := range m.Registers() {
		nv, more := r.Values()
		pcs, approx := r.PCs()
		if nv != 8 || !more || len(pcs) != 4 || !approx {
			t.Fatalf("register %#x: %d values (more %v), %d PCs (approximate %v)", r.Offset, nv, more, len(pcs), approx)
		}
	}
	if len(s.Threads) != 6 || !s.OtherThreads || len(s.Events) != 3 || !s.OtherEvents {
		t.Errorf("%d threads, %d events", len(s.Threads), len(s.Events))
	}
	var out bytes.Buffer
	WriteText(&out, s, TextOptions{Top: 3, PCs: 3})
	for _, want := range []string{"8+", "~", "13 more registers", "other maps (7)", "others", "other events"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
