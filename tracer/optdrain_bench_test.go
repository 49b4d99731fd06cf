package tracer

import (
	"encoding/binary"
	"io"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/mmiotrace/mmiotrace/kmmio/optprobe"
	"github.com/mmiotrace/mmiotrace/trace"
)

// fillRing writes n committed 1-byte read records into ring memory mem
// from ticket first on, as detours do (the layout is optprobe's: see
// ring.go there), and returns the next ticket.
func fillRing(mem []byte, slots, first, n uint64, tsc uint64) uint64 {
	le := binary.LittleEndian
	for t := first; t < first+n; t++ {
		s := mem[4096+(t&(slots-1))*optprobe.SlotSize:]
		le.PutUint64(s[8:], tsc+t*300)       // TSC
		le.PutUint32(s[16:], 4242)           // TID
		le.PutUint32(s[20:], 1)              // width 1, a read
		le.PutUint64(s[24:], 0x55869d7d37e6) // PC
		le.PutUint64(s[32:], 0x7f0000000000+t%4096)
		s[64] = byte(t)
		atomic.StoreUint64((*uint64)(unsafe.Pointer(&s[0])), t+1)
	}
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&mem[0])), first+n)
	return first + n
}

// BenchmarkDrain is what a record written by a detour costs the tracer:
// reading it from the ring, making its R record, and the log pipeline to
// its text (as BenchmarkLogPipeline in package trace), per record.
func BenchmarkDrain(b *testing.B) {
	const slots = optprobe.RingSlots
	mem := make([]byte, optprobe.RingBytes(slots))
	ring, err := optprobe.NewRing(mem)
	if err != nil {
		b.Fatal(err)
	}
	sink := trace.NewTextSink(io.Discard)
	buf := trace.NewBuffer(sink, sink.Flush, 8192, trace.SortByTime())
	t := &Tracer{cfg: Config{Out: buf}}
	d := &drainer{t: t, clock: optprobe.NewClock(trace.Now), last: map[int32]int64{},
		counts: map[*MapStats]*[2]uint64{}}
	pr := &procRing{pid: 1, ring: ring}
	pr.targets.Store(&[]target{{lo: 0x7f0000000000, hi: 0x7f0000100000, id: 1, stats: &MapStats{ID: 1}}})
	d.rings = []*procRing{pr}
	next := uint64(0)
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(uint64(b.N-done), slots/2)
		b.StopTimer()
		next = fillRing(mem, slots, next, n, optprobe.TSC())
		b.StartTimer()
		got, err := d.drainAll(false)
		if err != nil || got != int(n) {
			b.Fatalf("drained %d of %d: %v", got, n, err)
		}
		done += int(n)
	}
	buf.Close()
}
