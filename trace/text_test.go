package trace

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// accessRecord is an R record as a traced mdb_dump makes them.
func accessRecord(i int) Record {
	r := Record{Kind: KindRead, TID: 18743, MapID: 1, Time: 22119031217000 + int64(i)*110,
		Phys: 0x3f810 + uint64(i%4096), PC: 0x55869d7d37e6}
	r.SetValue(uint64(i)&0xff, 1)
	r.Kind = AccessKind(false, 1)
	return r
}

// BenchmarkAppendText is the text formatting of one R record.
func BenchmarkAppendText(b *testing.B) {
	r := accessRecord(7)
	var buf []byte
	for b.Loop() {
		buf = AppendText(buf[:0], &r)
	}
}

// BenchmarkLogPipeline is what a record costs from the tracer's Append to
// the log's writer: the copy into the batch, the sort check, the
// formatting and the buffered write, with the batch limit a session uses.
func BenchmarkLogPipeline(b *testing.B) {
	recs := make([]Record, 4096)
	for i := range recs {
		recs[i] = accessRecord(i)
	}
	sink := NewTextSink(io.Discard)
	buf := NewBuffer(sink, sink.Flush, 8192, SortByTime())
	i := 0
	for b.Loop() {
		r := &recs[i&4095]
		r.Time = 22119031217000 + int64(i)*110 // one thread's: in order
		buf.Append(r)
		i++
	}
	buf.Close()
}

// TestTextSinkAccessCache checks that the sink's cached rendering of access
// lines is AppendText's, byte for byte, over records whose fields repeat
// and change as a traced program's do: seconds rolling over, threads and
// maps alternating, instruction addresses colliding in the cache, every
// width, negative and zero times and thread ids.
func TestTextSinkAccessCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pcs := []uint64{0x401000, 0x401040, 0x402000, 0x55869d7d37e6, 0x55869d7d37e6 + 64<<6, 0}
	widths := []uint8{1, 2, 4, 8, 16, 32, 64, 3}
	var recs []Record
	tm := int64(999_999_000)
	for i := 0; i < 20000; i++ {
		r := Record{TID: int32(rng.IntN(3)) - 1, MapID: uint32(rng.IntN(3)), PC: pcs[rng.IntN(len(pcs))],
			Phys: rng.Uint64() >> uint(rng.IntN(64)), Width: widths[rng.IntN(len(widths))]}
		tm += int64(rng.IntN(400_000))
		r.Time = tm
		switch rng.IntN(50) {
		case 0:
			r.Time = -r.Time
		case 1:
			r.Time = 0
		}
		for j := 0; j < int(r.Width) && j < MaxWidth; j++ {
			if rng.IntN(3) > 0 {
				r.Value[j] = byte(rng.Uint32())
			}
		}
		r.Kind = AccessKind(rng.IntN(2) == 0, int(r.Width))
		if rng.IntN(7) == 0 {
			r.Kind = KindRead // a producer's kind, corrected by the width
		}
		recs = append(recs, r)
		if rng.IntN(100) == 0 {
			recs = append(recs, Record{Kind: KindMark, Time: tm, Text: "mark"})
		}
	}
	var got bytes.Buffer
	sink := NewTextSink(&got)
	if err := sink.Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []byte("VERSION " + Version + "\n")
	for i := range recs {
		want = AppendText(want, &recs[i])
	}
	if !bytes.Equal(got.Bytes(), want) {
		g, w := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Fatalf("line %d: sink wrote\n%s\nAppendText makes\n%s", i+1, g[i], w[i])
			}
		}
		t.Fatalf("sink wrote %d lines, AppendText makes %d", len(g), len(w))
	}
}
