package wire

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// newPair makes a ring and maps it a second time, as the collector does.
func newPair(t *testing.T, size int) (prod, cons *Ring) {
	t.Helper()
	prod, f, err := CreateRing(size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cons, err = OpenRing(int(f.Fd()), prod.Size())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cons.Close()
		prod.Close()
	})
	return prod, cons
}

// produce writes one record whose payload is g and seq, waiting for room.
func produce(r *Ring, g uint32, seq uint64) {
	n := RecordSize(12)
	for {
		pos, rec, ok := r.TryReserve(n)
		if ok {
			PutHeader(rec, 1, int64(seq), -1, 12)
			binary.LittleEndian.PutUint32(rec[RecordHeader:], g)
			binary.LittleEndian.PutUint64(rec[RecordHeader+4:], seq)
			r.Commit(pos, n)
			return
		}
		runtime.Gosched()
	}
}

// TestRingProducersConsumer runs four producers against one consumer through
// a one-page ring, so records wrap past its end many times: every record
// arrives whole, once, in each producer's order.
func TestRingProducersConsumer(t *testing.T) {
	prod, cons := newPair(t, 4096)
	const g, n = 4, 20000
	var wg sync.WaitGroup
	for k := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				produce(prod, uint32(k), uint64(i))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	next := make([]uint64, g)
	total := 0
	consume := func() int {
		k, err := cons.Consume(func(rec []byte) error {
			h, p, err := ParseRecord(rec)
			if err != nil {
				return err
			}
			gi, seq := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint64(p[4:])
			if h.ID != 1 || h.Size != RecordSize(12) || gi >= g || seq != next[gi] || h.Time != int64(seq) {
				t.Fatalf("record %+v goroutine %d seq %d, want seq %d", h, gi, seq, next[gi])
			}
			next[gi]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		total += k
		return k
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
			consume()
		}
	}
	for consume() > 0 {
	}
	if total != g*n || prod.Lost() != 0 {
		t.Fatalf("consumed %d, lost %d; want %d, 0", total, prod.Lost(), g*n)
	}
}

func TestRingFull(t *testing.T) {
	prod, cons := newPair(t, 4096)
	if !prod.Fits(4096) || prod.Fits(4097) {
		t.Fatal("Fits")
	}
	n := RecordSize(8)
	k := 0
	for {
		pos, rec, ok := prod.TryReserve(n)
		if !ok {
			break
		}
		PutHeader(rec, 1, 0, -1, 8)
		prod.Commit(pos, n)
		k++
	}
	if k != 4096/int(n) {
		t.Fatalf("%d records of %d bytes fit in 4096", k, n)
	}
	prod.AddLost(3)
	if cons.Lost() != 3 {
		t.Fatalf("consumer sees %d lost", cons.Lost())
	}
	if got, err := cons.ConsumeUpTo(3, func([]byte) error { return nil }); err != nil || got != 3 {
		t.Fatalf("ConsumeUpTo(3) = %d, %v", got, err)
	}
	if got, err := cons.Consume(func([]byte) error { return nil }); err != nil || got != k-3 {
		t.Fatalf("Consume = %d, %v; want %d", got, err, k-3)
	}
	if _, _, ok := prod.TryReserve(n); !ok {
		t.Fatal("no room after the consumer drained the ring")
	}
	prod.SetFlags(FlagTIDs | FlagBlocking)
	if cons.Flags() != FlagTIDs|FlagBlocking {
		t.Fatalf("flags %#x", cons.Flags())
	}
}

// TestOpenRingChecks gives the consumer rings that break the rules.
func TestOpenRingChecks(t *testing.T) {
	prod, f, err := CreateRing(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	defer f.Close()
	for _, size := range []int{0, 4095, 6000, 8192, MaxRingSize * 2} {
		if r, err := OpenRing(int(f.Fd()), size); err == nil {
			r.Close()
			t.Errorf("OpenRing with size %d succeeded", size)
		}
	}
	copy(prod.header(offMagic, 8), "garbage!")
	if r, err := OpenRing(int(f.Fd()), 4096); !errors.Is(err, ErrCorrupt) {
		if r != nil {
			r.Close()
		}
		t.Errorf("bad magic: %v", err)
	}
	// A memfd that could shrink under the consumer's mapping.
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Ftruncate(fd, HeaderSize+4096)
	if r, err := OpenRing(fd, 4096); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "sealed") {
		if r != nil {
			r.Close()
		}
		t.Errorf("unsealed memfd: %v", err)
	}
}

// TestConsumeCorrupt has the producer write records that break the format.
func TestConsumeCorrupt(t *testing.T) {
	for name, size := range map[string]uint32{"unaligned": 28, "short": 16, "larger than the ring": 8192, "past head": 64} {
		prod, cons := newPair(t, 4096)
		pos, rec, _ := prod.TryReserve(32)
		PutHeader(rec, 1, 0, -1, 8)
		prod.Commit(pos, size)
		if _, err := cons.Consume(func([]byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Consume = %v, want ErrCorrupt", name, err)
		}
	}
}

func ringMapped(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "memfd:mmiotrace-tracepoints")
}

// TestRingRelease lets go of a ring's shared memory while a writer could
// still use it: writes go on without a fault, into memory nobody reads.
func TestRingRelease(t *testing.T) {
	before := ringMapped(t)
	prod, f, err := CreateRing(4096)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := ringMapped(t); got != before+2 {
		t.Fatalf("%d ring mappings after CreateRing, want %d", got, before+2)
	}
	if err := prod.Release(); err != nil {
		t.Fatal(err)
	}
	if got := ringMapped(t); got != before {
		t.Fatalf("%d ring mappings after Release, want %d", got, before)
	}
	// A late writer: its records land in private pages (100 fit).
	for i := range 100 {
		produce(prod, 0, uint64(i))
	}
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
}
