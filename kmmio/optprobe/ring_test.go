package optprobe

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// producer writes records the way a detour does (detour.go, record): take
// a ticket by compare-and-swap once the slot is free, fill it, commit.
type producer struct {
	mem []byte
	tid uint32
}

func (p *producer) word(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&p.mem[off])) }

// reserve takes a ticket, or reports the ring full.
func (p *producer) reserve() (uint64, bool) {
	for {
		t := atomic.LoadUint64(p.word(ringHead))
		s := ringHeaderSize + (t%RingSlots)<<slotShift
		seq := atomic.LoadUint64(p.word(s))
		switch d := int64(seq - t); {
		case d < 0:
			return 0, false
		case d > 0:
			continue
		}
		if atomic.CompareAndSwapUint64(p.word(ringHead), t, t+1) {
			return t, true
		}
	}
}

func (p *producer) fill(t uint64, addr uint64, width int, write bool) {
	s := p.mem[ringHeaderSize+(t%RingSlots)<<slotShift:][:SlotSize]
	binary.LittleEndian.PutUint64(s[slotTSC:], t*3)
	binary.LittleEndian.PutUint32(s[slotTID:], p.tid)
	info := uint32(width)
	if write {
		info |= InfoWrite
	}
	binary.LittleEndian.PutUint32(s[slotInfo:], info)
	binary.LittleEndian.PutUint64(s[slotPC:], 0x401000)
	binary.LittleEndian.PutUint64(s[slotAddr:], addr)
	binary.LittleEndian.PutUint64(s[slotValue:], addr^0xdead)
}

func (p *producer) commit(t uint64) {
	atomic.StoreUint64(p.word(ringHeaderSize+(t%RingSlots)<<slotShift), t+1)
}

func (p *producer) put(addr uint64) bool {
	t, ok := p.reserve()
	if ok {
		p.fill(t, addr, 8, false)
		p.commit(t)
	}
	return ok
}

func newTestRing(t *testing.T) (*Ring, []byte) {
	mem := make([]byte, RingSize)
	r, err := NewRing(mem)
	if err != nil {
		t.Fatal(err)
	}
	return r, mem
}

// TestRingOrder: Drain stops at a ticket still being written; TakeThread
// takes a stopped thread's records beyond it, in order, and Drain skips
// them afterwards.
func TestRingOrder(t *testing.T) {
	r, mem := newTestRing(t)
	a, b := &producer{mem, 1}, &producer{mem, 2}
	a.put(1)
	ta, _ := a.reserve() // a is in the middle of a detour
	b.put(2)
	b.put(3)
	var got []uint64
	collect := func(e *Entry) error { got = append(got, e.Addr); return nil }
	if err := r.Drain(collect); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("drained %v, want [1]", got)
	}
	if err := r.TakeThread(2, collect); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("after TakeThread(2): %v, want [1 2 3]", got)
	}
	a.fill(ta, 4, 4, true)
	a.commit(ta)
	b.put(5)
	if err := r.Drain(collect); err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 2, 3, 4, 5}; len(got) != 5 || got[3] != 4 || got[4] != 5 {
		t.Fatalf("drained %v, want %v", got, want)
	}
	if r.Pending() != 0 {
		t.Errorf("%d pending", r.Pending())
	}
}

// TestRingFull: a producer finds the ring full after RingSlots records
// nobody consumed, and room again after a drain.
func TestRingFull(t *testing.T) {
	r, mem := newTestRing(t)
	p := &producer{mem, 7}
	for i := 0; i < RingSlots; i++ {
		if !p.put(uint64(i)) {
			t.Fatalf("full after %d records", i)
		}
	}
	if p.put(1) {
		t.Fatal("a record fit in a full ring")
	}
	n := 0
	if err := r.Drain(func(e *Entry) error {
		if e.Addr != uint64(n) || e.TID != 7 || e.Width != 8 {
			t.Fatalf("record %d: %+v", n, e)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != RingSlots || !p.put(1) {
		t.Fatalf("drained %d; room after: no", n)
	}
}

// TestRingConcurrent: producers on several goroutines, a consumer
// draining meanwhile: nothing lost, each producer's records in order.
func TestRingConcurrent(t *testing.T) {
	r, mem := newTestRing(t)
	const producers, each = 4, 20000
	var wg sync.WaitGroup
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func(tid uint32) {
			defer wg.Done()
			p := &producer{mem, tid}
			for n := uint64(0); n < each; {
				if p.put(n) {
					n++
				}
			}
		}(uint32(i + 1))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	next := map[int32]uint64{}
	check := func(e *Entry) error {
		if e.Addr != next[e.TID] {
			t.Fatalf("tid %d: record %d, want %d", e.TID, e.Addr, next[e.TID])
		}
		next[e.TID]++
		return nil
	}
	for {
		select {
		case <-done:
			if err := r.Drain(check); err != nil {
				t.Fatal(err)
			}
			for tid, n := range next {
				if n != each {
					t.Errorf("tid %d: %d records, want %d", tid, n, each)
				}
			}
			return
		default:
			if err := r.Drain(check); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRingCorrupt: a slot no detour could have written is reported, and
// the records after it still come.
func TestRingCorrupt(t *testing.T) {
	r, mem := newTestRing(t)
	p := &producer{mem, 1}
	p.put(1)
	tk, _ := p.reserve()
	p.fill(tk, 2, 3, false) // width 3
	p.commit(tk)
	p.put(3)
	var got []uint64
	err := r.Drain(func(e *Entry) error { got = append(got, e.Addr); return nil })
	if !errors.Is(err, ErrCorrupt) || len(got) != 1 {
		t.Fatalf("drain: %v after %v, want ErrCorrupt after [1]", err, got)
	}
	if err := r.Drain(func(e *Entry) error { got = append(got, e.Addr); return nil }); err != nil || len(got) != 2 || got[1] != 3 {
		t.Fatalf("drain after: %v, %v", got, err)
	}
}

// TestRingAbandon: tickets whose writer died are skipped and their slots
// freed.
func TestRingAbandon(t *testing.T) {
	r, mem := newTestRing(t)
	p := &producer{mem, 1}
	p.put(1)
	p.reserve() // dies here
	p.put(3)
	var got []uint64
	if err := r.Abandon(func(e *Entry) error { got = append(got, e.Addr); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 3 || r.Pending() != 0 {
		t.Fatalf("abandon: %v, %d pending", got, r.Pending())
	}
	for i := 0; i < RingSlots; i++ {
		if !p.put(uint64(i)) {
			t.Fatalf("ring full after %d records: a slot was not freed", i)
		}
	}
}

// FuzzRing fills a slot with arbitrary bytes (the program can write its
// ring): reading it must not panic, and a record it returns must be
// well-formed.
func FuzzRing(f *testing.F) {
	f.Add(make([]byte, SlotSize))
	seed := make([]byte, SlotSize)
	binary.LittleEndian.PutUint32(seed[slotInfo:], 8|InfoWrite)
	f.Add(seed)
	mem := make([]byte, RingSize)
	f.Fuzz(func(t *testing.T, slot []byte) {
		r, err := NewRing(mem)
		if err != nil {
			t.Fatal(err)
		}
		p := &producer{mem, 1}
		tk, _ := p.reserve()
		copy(mem[ringHeaderSize:ringHeaderSize+SlotSize], slot)
		p.commit(tk)
		for _, drain := range []func(func(*Entry) error) error{r.Drain, r.Abandon} {
			drain(func(e *Entry) error {
				switch e.Width {
				case 1, 2, 4, 8, 16, 32, 64:
				default:
					t.Fatalf("record of width %d", e.Width)
				}
				return nil
			})
		}
	})
}
