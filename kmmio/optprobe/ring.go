package optprobe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The ring is the memory the detours write their records into and the
// tracer reads them from: a shared mapping in the program and in the
// tracer. It is a bounded multi-producer queue in the manner of Vyukov's:
//
//	header   (one page)  head at 0: the next ticket to hand out (producers)
//	slots    (a power of two of them, SlotSize bytes each)
//
// Each slot starts with a sequence word. Slot i is free for ticket t (t mod
// slots == i) when its sequence is t; a producer takes ticket t by
// compare-and-swap of head from t to t+1 after seeing it free, fills the
// slot, and commits it by storing t+1 into the sequence (x86 keeps stores
// in order, so the record is complete when the sequence says so). The
// tracer consumes ticket t when the sequence is t+1 and frees the slot for
// the next lap by storing t+slots. A producer that finds its slot still
// holding the previous lap's record finds the ring full: it does not wait
// there but traps to the tracer (the detour's slow path), which drains the
// ring and writes that record itself.
//
// A thread's tickets are taken in its program order, so the tracer, reading
// tickets in order, sees every thread's records in program order.
const (
	// RingSlots is the default number of slots, a power of two.
	RingSlots      = 1 << 13
	SlotSize       = 128
	slotShift      = 7
	ringHeaderSize = 4096
	// RingSize is the size of a ring of RingSlots slots.
	RingSize = ringHeaderSize + RingSlots*SlotSize

	ringHead = 0

	slotSeq   = 0  // u64: ticket+1 when committed, ticket when free
	slotTSC   = 8  // u64: time stamp counter after the access
	slotTID   = 16 // u32: the thread (from the identity block)
	slotInfo  = 20 // u32: width | InfoWrite
	slotPC    = 24 // u64: the instruction's address in the program
	slotAddr  = 32 // u64: the access's address in the traced mapping
	slotValue = 64 // the accessed bytes, up to 64
)

// InfoWrite marks a store in a slot's info word; the low byte is the width.
const InfoWrite = 1 << 8

// SlotTaken marks, in a slot's info word, a committed record the tracer
// has already consumed out of order (see Ring.TakeThread).
const slotTaken = 1 << 31

// Entry is one record read from the ring.
type Entry struct {
	Ticket uint64
	TSC    uint64
	TID    int32
	Width  int
	Write  bool
	PC     uint64
	Addr   uint64
	Value  [64]byte
}

// ErrCorrupt reports a ring slot whose contents no detour could have
// written: the program overwrote its ring.
var ErrCorrupt = errors.New("optprobe: corrupt ring slot")

// Ring is the tracer's side of a ring: it consumes the records. Its methods
// are not safe for concurrent use; the tracer serialises them.
type Ring struct {
	mem  []byte
	n    uint64 // slots
	tail uint64 // the next ticket to consume
	e    Entry  // the entry passed to callbacks, reused
}

// RingBytes returns the size of a ring of slots slots.
func RingBytes(slots int) int { return ringHeaderSize + slots*SlotSize }

// NewRing initialises the ring in mem (RingBytes of a power of two slots,
// shared with the program, which must not run a detour yet) and returns
// its reader.
func NewRing(mem []byte) (*Ring, error) {
	n := (len(mem) - ringHeaderSize) / SlotSize
	if n < 2 || n&(n-1) != 0 || len(mem) != RingBytes(n) {
		return nil, fmt.Errorf("optprobe: ring of %d bytes is not a power of two slots", len(mem))
	}
	r := &Ring{mem: mem, n: uint64(n)}
	atomic.StoreUint64(r.word(ringHead), 0)
	for i := uint64(0); i < r.n; i++ {
		atomic.StoreUint64(r.word(r.slot(i)+slotSeq), i)
	}
	return r, nil
}

func (r *Ring) word(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }

func (r *Ring) slot(t uint64) uint64 { return ringHeaderSize + (t&(r.n-1))<<slotShift }

// Slots returns the number of slots.
func (r *Ring) Slots() int { return int(r.n) }

// Produced returns how many tickets producers have taken since the ring
// was made: it grows while detours write records, whoever drains them.
func (r *Ring) Produced() uint64 { return atomic.LoadUint64(r.word(ringHead)) }

// Pending returns how many tickets were handed out and not yet consumed.
func (r *Ring) Pending() uint64 { return atomic.LoadUint64(r.word(ringHead)) - r.tail }

// committed reports whether ticket t's record is complete.
func (r *Ring) committed(t uint64) bool {
	return atomic.LoadUint64(r.word(r.slot(t)+slotSeq)) == t+1
}

// read decodes ticket t's committed record into r.e. Callbacks get &r.e:
// a pointer to a reused Entry, valid until they return.
func (r *Ring) read(t uint64) (*Entry, bool, error) {
	s := r.mem[r.slot(t) : r.slot(t)+SlotSize]
	info := binary.LittleEndian.Uint32(s[slotInfo:])
	e := &r.e
	e.Ticket = t
	e.TSC = binary.LittleEndian.Uint64(s[slotTSC:])
	e.TID = int32(binary.LittleEndian.Uint32(s[slotTID:]))
	e.Width = int(info & 0xFF)
	e.Write = info&InfoWrite != 0
	e.PC = binary.LittleEndian.Uint64(s[slotPC:])
	e.Addr = binary.LittleEndian.Uint64(s[slotAddr:])
	if info&slotTaken != 0 {
		return e, true, nil
	}
	switch e.Width {
	case 1, 2, 4, 8, 16, 32, 64:
	default:
		return e, false, fmt.Errorf("%w: ticket %d, info %#x", ErrCorrupt, t, info)
	}
	copy(e.Value[:e.Width], s[slotValue:])
	return e, false, nil
}

// release frees ticket t's slot for the next lap.
func (r *Ring) release(t uint64) {
	atomic.StoreUint64(r.word(r.slot(t)+slotSeq), t+r.n)
}

// Drain consumes the committed records in ticket order, up to the first
// ticket that is handed out but not committed yet (its thread is writing
// it), and calls fn for each (with an Entry that fn must not keep). It stops at fn's first error, with that
// record consumed. A corrupt slot is consumed and reported as ErrCorrupt
// after the records before it.
func (r *Ring) Drain(fn func(*Entry) error) error {
	head := atomic.LoadUint64(r.word(ringHead))
	for ; r.tail < head && r.committed(r.tail); r.tail++ {
		e, taken, err := r.read(r.tail)
		r.release(r.tail)
		if taken {
			continue
		}
		if err == nil {
			err = fn(e)
		}
		if err != nil {
			r.tail++
			return err
		}
	}
	return nil
}

// TakeThread consumes, after Drain, the committed records of thread tid
// that lie beyond a ticket still being written by another thread: a thread
// that stops in the tracer has no record in flight, so every record it
// made is committed, and they must reach the log before whatever the
// tracer logs for its stop. They are marked taken, so that Drain skips
// them later. Records are passed to fn in ticket order, which is the
// thread's program order.
func (r *Ring) TakeThread(tid int32, fn func(*Entry) error) error {
	if err := r.Drain(fn); err != nil {
		return err
	}
	head := atomic.LoadUint64(r.word(ringHead))
	for t := r.tail; t < head; t++ {
		if !r.committed(t) {
			continue
		}
		e, taken, err := r.read(t)
		if taken || e.TID != tid {
			continue
		}
		info := r.word(r.slot(t) + slotTID) // TID and info share this word
		atomic.StoreUint64(info, atomic.LoadUint64(info)|slotTaken<<32)
		if err == nil {
			err = fn(e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Void commits ticket t, taken by a thread the tracer moved out of a
// detour before it wrote the record (the tracer writes it itself), as a
// record already consumed, so that the tickets after it are not held up.
func (r *Ring) Void(t uint64) {
	if t < r.tail || t >= atomic.LoadUint64(r.word(ringHead)) {
		return
	}
	info := r.word(r.slot(t) + slotTID)
	atomic.StoreUint64(info, atomic.LoadUint64(info)|slotTaken<<32)
	atomic.StoreUint64(r.word(r.slot(t)+slotSeq), t+1)
}

// Abandon consumes every record that was committed, skipping tickets that
// will never be: it is for when no thread can write to the ring any more
// (the program exited or executed a new image, or every thread is stopped
// outside the detours), so that a ticket taken by a thread that died in
// the middle of a detour does not hold up the rest.
func (r *Ring) Abandon(fn func(*Entry) error) error {
	head := atomic.LoadUint64(r.word(ringHead))
	var first error
	for ; r.tail < head; r.tail++ {
		if !r.committed(r.tail) {
			r.release(r.tail) // its writer is gone: free the slot for the next lap
			continue
		}
		e, taken, err := r.read(r.tail)
		r.release(r.tail)
		if taken {
			continue
		}
		if err == nil {
			err = fn(e)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
