package trace

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// TestReaderKernelLog reads a log as the kernel's own mmiotrace writes it
// (ftrace's comment header, PID 0, pc 0, an LSPCI line): every record is
// there, and what is not a record is skipped and counted.
func TestReaderKernelLog(t *testing.T) {
	f, err := os.Open("testdata/kernel.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := NewReader(f)
	counts := map[Kind]int{}
	var first, mark, unk, last Record
	for {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if counts[r.Kind] == 0 && r.Kind == KindRead {
			first = r
		}
		switch r.Kind {
		case KindMark:
			mark = r
		case KindUnknown:
			unk = r
		}
		if r.TID != 0 || r.PC != 0 {
			t.Errorf("line %d: tid %d pc %#x, want the kernel's 0 and 0", rd.Line(), r.TID, r.PC)
		}
		counts[r.Kind]++
		last = r
	}
	want := map[Kind]int{KindPCIDev: 1, KindMap: 2, KindRead: 14, KindWrite: 10, KindUnknown: 1, KindMark: 1, KindUnmap: 2}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%v records: %d, want %d", k, counts[k], n)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("kinds %v, want %v", counts, want)
	}
	if rd.Version() != Version || rd.Skipped() != 3 || rd.Line() != 35 {
		t.Errorf("version %q, %d lines skipped, last line %d; want %q, 3 (two comments, LSPCI), 35", rd.Version(), rd.Skipped(), rd.Line(), Version)
	}
	if first.Width != 4 || first.Phys != 0xfd000000 || first.Uint64() != 0x49200a2 || first.Time != 154_736_210_000 || first.MapID != 1 {
		t.Errorf("first read %+v", first)
	}
	if mark.Text != "X is up" || mark.Time != 160_100_000_000 {
		t.Errorf("mark %q at %d", mark.Text, mark.Time)
	}
	if unk.Value[0] != 0x0f || unk.Value[1] != 0xb7 || unk.Value[2] != 0x07 || unk.Phys != 0xfd700000 {
		t.Errorf("unknown %+v", unk)
	}
	if last.Kind != KindUnmap || last.MapID != 1 {
		t.Errorf("last record %+v", last)
	}
}

// TestReaderLines covers line handling: CRLF endings, a last line without
// a newline, a line longer than the read buffer, one longer than MaxLine
// (an error, after which reading goes on), a malformed line (the same), and
// an old log's wide R line, which is read as RV.
func TestReaderLines(t *testing.T) {
	long := "TP 1.000000 5 a:b s=" + strings.Repeat("x", 100_000)
	huge := "MARK 1.000000 " + strings.Repeat("y", MaxLine)
	log := "VERSION 20070824\r\n" +
		"R 4 1.000000 1 0x10 0x1 0x0 7\r\n" +
		long + "\n" +
		huge + "\n" +
		"W 4 2.000000 1 0x10 zz 0x0 7\n" +
		"R 16 3.000000 1 0x20 0x1000000000000000000000000000000 0x0 7\n" +
		"RV 4 3.000000 1 0x20 0x5 0x0 7\n" +
		"UNMAP 4.000000 1 0x0 7"
	rd := NewReader(strings.NewReader(log))
	type step struct {
		kind Kind
		line int
		err  string
	}
	var got []step
	for {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		s := step{r.Kind, rd.Line(), ""}
		if err != nil {
			s.err = err.Error()
		}
		got = append(got, s)
		if r.Kind == KindEvent && (len(r.Fields) != 1 || len(r.Fields[0].Value) != 100_000) {
			t.Errorf("long TP line: fields %d", len(r.Fields))
		}
		if r.Kind == KindReadVec && (r.Width != 16 || r.Value[15] != 1 || r.Value[0] != 0) {
			t.Errorf("wide R line: %+v", r)
		}
	}
	want := []step{
		{KindRead, 2, ""},
		{KindEvent, 3, ""},
		{0, 4, "line 4: longer than 1048576 bytes"},
		{0, 5, `line 5 "W 4 2.000000 1 0x10 zz 0x0 7": bad value "zz"`},
		{KindReadVec, 6, ""},
		{KindRead, 7, ""}, // RV of a kernel width is an R
		{KindUnmap, 8, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("steps %+v\nwant %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestReaderDoesNotAllocate checks that reading access records allocates
// nothing per record: memory stays flat however long the log.
func TestReaderDoesNotAllocate(t *testing.T) {
	line := "R 4 154.736210 1 0xfd000000 0x49200a2 0x55555555 1234\nWV 16 154.736210 1 0xfd000000 0x49200a2000000000000 0x55555555 1234\n"
	src := &repeatReader{s: line}
	rd := NewReader(src)
	allocs := testing.AllocsPerRun(10000, func() {
		if _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.2f allocations per record, want 0", allocs)
	}
}

// repeatReader repeats a string forever.
type repeatReader struct {
	s   string
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

func TestReaderPropagatesReadError(t *testing.T) {
	boom := errors.New("disk gone")
	rd := NewReader(io.MultiReader(strings.NewReader("R 4 1.000000 1 0x0 0x1 0x0 1\n"), &failReader{boom}))
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

// TestTimedReader checks the times given to PCIDEV and NAME records: the
// next timed record's at the start of a log, the previous one's after.
func TestTimedReader(t *testing.T) {
	log := "VERSION 20070824\nPCIDEV 0100 10de0429 10 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n" +
		"MAP 5.000000 1 0x0 0x1000 0x1000 0x0 7\nNAME 1 /dev/x\nR 4 6.000000 1 0x0 0x1 0x0 7\n" +
		"PCIDEV 0200 10de0429 10 0 0 0 0 0 0 0 0 0 0 0 0 0 0\nMAP 7.000000 2 0x0 0x2000 0x1000 0x0 7\n"
	rd := NewTimedReader(strings.NewReader(log))
	var got []string
	for {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Kind.String()+"@"+strings.TrimSuffix(string(appendTime(nil, r.Time)), ".000000"))
	}
	want := "PCIDEV@5 MAP@5 NAME@5 R@6 PCIDEV@6 MAP@7"
	if strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
	only := NewTimedReader(strings.NewReader("NAME 1 x\n"))
	if r, err := only.Next(); err != nil || r.Kind != KindName || r.Time != 0 {
		t.Errorf("a log of untimed records only: %+v, %v", r, err)
	}
}

// BenchmarkReader measures reading a log of R and W lines (the bulk of
// any log), in bytes of log per second.
func BenchmarkReader(b *testing.B) {
	line := "R 4 154.736210 1 0xfd000000 0x49200a2 0x555555554abc 1234\nW 4 154.736211 1 0xfd000004 0x1 0x555555554ac0 1234\n"
	rd := NewReader(&repeatReader{s: line})
	b.SetBytes(int64(len(line) / 2))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
