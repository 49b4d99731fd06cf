package trace

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTextRoundTrip(t *testing.T) {
	var wide Record
	wide.Kind, wide.Width, wide.Time, wide.MapID, wide.Phys, wide.PC, wide.TID = KindWriteVec, 16, 5_000_001_000, 2, 0x10, 0x401000, 77
	for i := 0; i < 16; i++ {
		wide.Value[i] = byte(i + 1)
	}
	var r4 Record
	r4.Kind, r4.Time, r4.MapID, r4.Phys, r4.PC, r4.TID = KindRead, 1_000_000, 1, 0xfebf0000, 0x40112a, 1234
	r4.SetValue(0xdeadbeef, 4)
	odd := Record{Kind: KindReadVec, Width: 6, Time: 5_000_002_000, MapID: 2, Phys: 0x20, PC: 0x401004, TID: 77}
	copy(odd.Value[:], []byte{1, 0, 0, 0, 0xff, 0})
	code := Record{Kind: KindCode, Time: 4_000_000, PID: 1234, Virt: 0x555555554000, Len: 0x2000, Phys: 0x1000,
		Width: 3, Text: "/usr/lib/my lib.so"}
	copy(code.Value[:], []byte{0xab, 0x01, 0xff})
	nocode := Record{Kind: KindCode, Time: 4_000_000, PID: 1234, Virt: 0x1000, Len: 0x1000, Text: "/a"}
	unk := Record{Kind: KindUnknown, Time: 3_000_000_000, MapID: 1, Phys: 0x20, PC: 0x400000, TID: 9}
	unk.Value[0], unk.Value[1], unk.Value[2] = 0x0f, 0xae, 0x38
	recs := []Record{
		{Kind: KindMap, Time: 12_345_678_901, MapID: 1, Phys: 0xfebf0000, Virt: 0x7f0000000000, Len: 0x1000, PC: 0x401000, TID: 1234},
		r4, wide, odd, unk, code, nocode,
		{Kind: KindMark, Time: 2_000_000_000, Text: "hello world"},
		{Kind: KindName, MapID: 3, Text: "counter"},
		{Kind: KindExec, Time: 7, MapID: 3, Phys: 0x401000, PC: 0x401000, TID: 5},
		{Kind: KindEvent, Time: 8_000, TID: 6, Text: "net:rx", Fields: []Field{{"len", "64"}, {"dev", "eth 0"}}},
		{Kind: KindProc, Time: 9_000, PID: 1240, Parent: 1234, Text: "/usr/bin/my driver"},
		{Kind: KindSyscall, Time: 10_000, MapID: 1, Phys: 0xfebf0010, Len: 0x20, Dir: DirRead, Text: "write", PC: 0x401200, TID: 1234},
		{Kind: KindSyscall, Time: 11_000, MapID: 2, Phys: 0x10, Len: 0x1000, Dir: DirWrite, Text: "pread64", PC: 0x401200, TID: 1234},
		{Kind: KindSyscall, Time: 12_000, MapID: 2, Phys: 0x10, Len: 0x8, Dir: DirRead | DirWrite, Text: "ioctl", PC: 0x401200, TID: 1235},
		{Kind: KindUnmap, Time: 13_000_000_000, MapID: 1, PC: 0x401100, TID: 1234},
	}
	var buf bytes.Buffer
	s := NewTextSink(&buf)
	if err := s.Write(recs); err != nil {
		t.Fatal(err)
	}
	s.Flush()
	want := `VERSION 20070824
MAP 12.345678 1 0xfebf0000 0x7f0000000000 0x1000 0x401000 1234
R 4 0.001000 1 0xfebf0000 0xdeadbeef 0x40112a 1234
WV 16 5.000001 2 0x10 0x100f0e0d0c0b0a090807060504030201 0x401000 77
RV 6 5.000002 2 0x20 0xff00000001 0x401004 77
UNKNOWN 3.000000 1 0x20 0f,ae,38 0x400000 9
CODE 0.004000 1234 0x555555554000 0x555555556000 0x1000 ab01ff /usr/lib/my lib.so
CODE 0.004000 1234 0x1000 0x2000 0x0 - /a
MARK 2.000000 hello world
NAME 3 counter
X 0.000000 3 0x401000 0x401000 5
TP 0.000008 6 net:rx len=64 dev="eth 0"
PROC 0.000009 1240 1234 /usr/bin/my driver
SYS 0.000010 1 0xfebf0010 0x20 R write 0x401200 1234
SYS 0.000011 2 0x10 0x1000 W pread64 0x401200 1234
SYS 0.000012 2 0x10 0x8 RW ioctl 0x401200 1235
UNMAP 13.000000 1 0x401100 1234
`
	if got := buf.String(); got != want {
		t.Fatalf("text mismatch\ngot:\n%s\nwant:\n%s", got, want)
	}
	back, err := ParseText(strings.NewReader(buf.String() + "SOMETHING new\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(recs) {
		t.Fatalf("parsed %d records, want %d", len(back), len(recs))
	}
	for i := range recs {
		a, b := recs[i], back[i]
		// Times lose sub-microsecond precision in text.
		a.Time -= a.Time % 1000
		if a.Kind == KindName || a.Kind == KindPCIDev {
			a.Time = 0
		}
		if a.Kind != b.Kind || a.Time != b.Time || a.MapID != b.MapID || a.Phys != b.Phys || a.Virt != b.Virt || a.Len != b.Len ||
			a.PC != b.PC || a.TID != b.TID || a.PID != b.PID || a.Value != b.Value || a.Text != b.Text || a.Width != b.Width ||
			a.Dir != b.Dir || a.Parent != b.Parent {
			t.Errorf("record %d: got %+v\nwant %+v", i, b, a)
		}
		if len(a.Fields) != len(b.Fields) {
			t.Errorf("record %d: fields %v, want %v", i, b.Fields, a.Fields)
		}
		for j := range a.Fields {
			if j < len(b.Fields) && a.Fields[j] != b.Fields[j] {
				t.Errorf("record %d field %d: %v, want %v", i, j, b.Fields[j], a.Fields[j])
			}
		}
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, line := range []string{
		"R 4 1.5 1 0x0 0x1 0x2 3", "MAP 1.000000 x", "W 2 1.000000 1 0x0 0x123456 0x0 1",
		"R 0 1.000000 1 0x0 0x0 0x0 1", "RV 65 1.000000 1 0x0 0x0 0x0 1", "R 4 1.000000 1 0x0 0xg 0x0 1",
		"UNKNOWN 1.000000 1 0x0 0f,zz,00 0x0 1", "CODE 1.000000 1 0x2000 0x1000 0x0 - /a",
		"CODE 1.000000 1 0x1000 0x2000 0x0 abc /a", "CODE 1.000000 1 0x1000 0x2000 0x0 -",
		"MAP 99999999999999999999.000000 1 0x0 0x0 0x0 0x0 1",
		"SYS 1.000000 1 0x0 0x10 X write 0x0 1", "SYS 1.000000 1 0x0 0x10 R write", "PROC 1.000000 x 1 prog",
		"PROC 1.000000 1 1",
	} {
		if _, _, err := ParseLine(line); err == nil {
			t.Errorf("ParseLine(%q) accepted a malformed line", line)
		}
	}
}

type slowSink struct {
	mu   sync.Mutex
	seen []uint64
	fail error
}

func (s *slowSink) Write(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		s.seen = append(s.seen, recs[i].Phys)
	}
	return s.fail
}

func TestBufferKeepsEveryRecordInOrder(t *testing.T) {
	sink := &slowSink{}
	b := NewBuffer(sink, nil, 64) // tiny: forces Append to wait for the writer
	const n = 100000
	for i := 0; i < n; i++ {
		r := Record{Kind: KindRead, Phys: uint64(i)}
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if len(sink.seen) != n || b.Written() != n {
		t.Fatalf("sink saw %d records, Written %d, want %d", len(sink.seen), b.Written(), n)
	}
	for i, v := range sink.seen {
		if v != uint64(i) {
			t.Fatalf("record %d out of order: %d", i, v)
		}
	}
}

func TestBufferReportsWriteError(t *testing.T) {
	boom := errors.New("disk full")
	b := NewBuffer(&slowSink{fail: boom}, nil, 4)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = b.Append(&Record{Kind: KindRead})
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Append error = %v, want %v", err, boom)
	}
	if err := b.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close error = %v, want %v", err, boom)
	}
}

func TestNowIsMonotonicClock(t *testing.T) {
	var ts unix.Timespec
	a := Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	b := Now()
	if k := ts.Nano(); k < a-1000 || k > b+1000 {
		t.Fatalf("CLOCK_MONOTONIC %d outside [%d, %d]: Now is not that clock", k, a, b)
	}
}

// TestBufferAppendBatch checks that batches and single records keep their
// order through a buffer small enough that AppendBatch must wait for the
// writer part way through a batch.
func TestBufferAppendBatch(t *testing.T) {
	sink := &slowSink{}
	b := NewBuffer(sink, nil, 16)
	const n = 20000
	var batch []Record
	for i := 0; i < n; {
		if i%7 == 0 {
			r := Record{Kind: KindRead, Phys: uint64(i)}
			if err := b.Append(&r); err != nil {
				t.Fatal(err)
			}
			i++
			continue
		}
		batch = batch[:0]
		for k := 0; k < 1+i%45 && i < n; k++ {
			batch = append(batch, Record{Kind: KindRead, Phys: uint64(i)})
			i++
		}
		if err := b.AppendBatch(batch); err != nil {
			t.Fatal(err)
		}
		clear(batch) // the buffer copied them
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if len(sink.seen) != n || b.Written() != n {
		t.Fatalf("sink saw %d records, buffer wrote %d; want %d", len(sink.seen), b.Written(), n)
	}
	for i, p := range sink.seen {
		if p != uint64(i) {
			t.Fatalf("record %d is %d: order lost", i, p)
		}
	}

}

func BenchmarkBufferAppend(b *testing.B) {
	buf := NewBuffer(&slowSink{}, nil, 1<<14)
	r := Record{Kind: KindRead, Width: 4}
	for b.Loop() {
		buf.Append(&r)
	}
	buf.Close()
}

// TestBufferSortByTime checks that a SortByTime buffer writes a batch in
// time order, keeping the order of records with equal times.
func TestBufferSortByTime(t *testing.T) {
	sink := &collectSink{}
	b := NewBuffer(sink, nil, 1024, SortByTime())
	for _, r := range []Record{
		{Kind: KindMap, Time: 10, MapID: 1},
		{Kind: KindName, Time: 10, MapID: 1, Text: "a"},
		{Kind: KindWrite, Time: 30, MapID: 1},
		{Kind: KindEvent, Time: 20, Text: "late:tp"}, // polled late
		{Kind: KindRead, Time: 40, MapID: 1},
	} {
		if err := b.Append(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var got []Kind
	for _, r := range sink.recs {
		got = append(got, r.Kind)
	}
	want := []Kind{KindMap, KindName, KindEvent, KindWrite, KindRead}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// collectSink keeps copies of every record written.
type collectSink struct{ recs []Record }

func (s *collectSink) Write(recs []Record) error {
	s.recs = append(s.recs, recs...)
	return nil
}

func TestPCIDevRoundTrip(t *testing.T) {
	const line = "3b00 80861572 2a fb000000 0 fb80000c 0 e001 0 fb880000 800000 0 8000 0 20 0 80000 vfio-pci"
	d, err := ParsePCIDev(line)
	if err != nil {
		t.Fatal(err)
	}
	if d.Bus != 0x3b || d.DevFn != 0 || d.Vendor != 0x8086 || d.Device != 0x1572 || d.IRQ != 42 ||
		d.Start[2] != 0xfb80000c || d.Size[6] != 0x80000 || d.Driver != "vfio-pci" || d.Address() != "3b:00.0" {
		t.Errorf("parsed %+v", d)
	}
	if s := d.String(); s != line {
		t.Errorf("String() = %q, want %q", s, line)
	}
	for _, bad := range []string{"", "0100 10de0429 10", "0100 10de0429 10 0 0 0 0 0 0 zz 0 0 0 0 0 0 0"} {
		if _, err := ParsePCIDev(bad); err == nil {
			t.Errorf("ParsePCIDev(%q) accepted it", bad)
		}
	}
}

// TestSortByTimeStable checks the permutation sort against a stable sort
// of the records themselves, on batches with many equal times.
func TestSortByTimeStable(t *testing.T) {
	var perm []int32
	for n := 0; n < 300; n += 7 {
		batch := make([]Record, n)
		for i := range batch {
			batch[i] = Record{Time: int64((i * 7919) % 13), Phys: uint64(i)}
		}
		want := slices.Clone(batch)
		slices.SortStableFunc(want, func(x, y Record) int { return cmp.Compare(x.Time, y.Time) })
		sortByTime(batch, &perm)
		for i := range batch {
			if batch[i].Time != want[i].Time || batch[i].Phys != want[i].Phys {
				t.Fatalf("n=%d: record %d is (%d, %d), want (%d, %d)", n, i, batch[i].Time, batch[i].Phys, want[i].Time, want[i].Phys)
			}
		}
	}
}
