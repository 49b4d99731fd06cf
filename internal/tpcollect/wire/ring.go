package wire

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The ring lives in a sealed memfd: one header page, then the data area of
// Size bytes (a power of two, at least one page). Both sides map the data
// area twice, back to back, so a record that wraps past the end is still
// contiguous in memory and never needs splitting or padding.
//
// Positions (head, tail) count bytes since the ring was made and never wrap;
// a position's offset in the data area is pos & (Size-1).
//
// Producers (any number, in the traced program) reserve space by advancing
// head with compare-and-swap, fill the record, then publish it by storing its
// size into its first word. The one consumer reads the record at tail once
// that word is non-zero, zeroes the whole record (so stale bytes never look
// like a committed size later), and advances tail. A producer that finds no
// room either waits for the consumer (blocking mode, FlagBlocking) or counts
// the event in lost and drops it (discard mode): nothing is ever silently
// missing.
const (
	HeaderSize = 4096

	offMagic   = 0
	offVersion = 8
	offSize    = 16
	offFlags   = 24
	offHead    = 64  // own cache line: written by every producer
	offTail    = 128 // own cache line: written by the consumer
	offLost    = 192 // own cache line: written by producers that found no room

	// Magic identifies a ring header ("MMTPRING" little-endian).
	Magic   = 0x474e495250544d4d
	Version = 1

	// MinRingSize and MaxRingSize bound the data area.
	MinRingSize = 4096
	MaxRingSize = 1 << 30
	// DefaultRingSize is used when a collector asks for size 0: about
	// 130,000 small events (32 bytes each). In blocking mode a larger ring
	// loses nothing more (nothing is lost) and only delays the moment the
	// program must wait; it costs memory, cache misses (a burst of
	// 1,000,000 events collected 15-30 % slower through a 16 MiB ring than
	// through this one) and a longer final drain when collection stops.
	DefaultRingSize = 4 << 20
)

// Flags in the ring header, set by the producer.
const (
	// FlagTIDs means records carry real thread ids.
	FlagTIDs = 1 << 0
	// FlagBlocking means a producer that finds the ring full waits for the
	// consumer to make room, for as long as the collector stays connected;
	// without it, the event is dropped and counted in lost.
	FlagBlocking = 1 << 1
)

// Record layout, little-endian, 8-byte aligned, Size including padding:
//
//	0  uint32 size     total bytes, a multiple of 8; written last (commit)
//	4  uint32 id       tracepoint id (Desc.ID), or MetaID
//	8  int64  time     CLOCK_MONOTONIC nanoseconds
//	16 int32  tid      thread id, or -1 when not recorded
//	20 uint32 paylen   payload bytes that follow
//	24 payload         fixed part, then each string as uint16 length + bytes
const (
	RecordHeader = 24
	// MetaID marks a record whose payload is a JSON Desc: the producer writes
	// one when a tracepoint starts feeding the ring, before any of its events.
	MetaID = 0
)

// ErrCorrupt reports data from the other side that breaks the format: a
// ring, record or tracepoint description.
var ErrCorrupt = errors.New("corrupt tracepoint data")

// Ring is one side's mapping of a shared ring.
type Ring struct {
	base unsafe.Pointer // header page, then data, then the data's mirror
	mlen uintptr
	data []byte // len 2*size: the data area and its mirror
	size uint64
	hdr  unsafe.Pointer

	tail uint64 // consumer only: its private copy of the tail
	head uint64 // consumer only: the head as last read
}

// RoundRingSize returns the data size actually used for a request of n bytes:
// n rounded up to a power of two within [MinRingSize, MaxRingSize]; 0 means
// DefaultRingSize.
func RoundRingSize(n int) int {
	if n <= 0 {
		return DefaultRingSize
	}
	s := MinRingSize
	for s < n && s < MaxRingSize {
		s <<= 1
	}
	return s
}

// Size returns the data area's size in bytes.
func (r *Ring) Size() int { return int(r.size) }

func (r *Ring) header(off, n int) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(r.hdr, off)), n)
}

func (r *Ring) word(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Add(r.hdr, off))
}

// SetFlags records producer-side facts in the header (Flag*).
func (r *Ring) SetFlags(f uint64) { r.word(offFlags).Store(f) }

// Flags returns the header's flags.
func (r *Ring) Flags() uint64 { return r.word(offFlags).Load() }

// Lost returns how many events producers dropped because the ring was full.
func (r *Ring) Lost() uint64 { return r.word(offLost).Load() }

// AddLost counts n events dropped by a producer.
func (r *Ring) AddLost(n uint64) { r.word(offLost).Add(n) }

// Fits reports whether a record of n bytes can ever fit in the ring.
func (r *Ring) Fits(n uint32) bool { return uint64(n) <= r.size }

// TryReserve claims n bytes (a multiple of 8, at least RecordHeader) for one
// record and returns its position and memory, or ok=false when the ring has
// no room now. It never blocks and takes no lock.
func (r *Ring) TryReserve(n uint32) (pos uint64, rec []byte, ok bool) {
	head, tail := r.word(offHead), r.word(offTail)
	for {
		h := head.Load()
		// tail only grows, so a stale value can only make the room look
		// smaller, never larger: the check is safe without a lock.
		if h+uint64(n)-tail.Load() > r.size {
			return 0, nil, false
		}
		if head.CompareAndSwap(h, h+uint64(n)) {
			off := h & (r.size - 1)
			return h, r.data[off : off+uint64(n) : off+uint64(n)], true
		}
	}
}

// Commit publishes the record at pos, whose body the caller has written: the
// size word is stored last, atomically, so the consumer never sees a partly
// written record.
func (r *Ring) Commit(pos uint64, n uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.data[pos&(r.size-1)])), n)
}

// Consume hands the committed records at the tail to fn, in order, stopping
// at the first record not yet committed or after about one ring's worth of
// bytes, so a producer faster than the consumer cannot keep it looping. Each
// record slice is valid only during its call, and lies in memory the
// producer can still change: fn must read each field once, and copy what it
// parses as a whole. Consumed records are zeroed and the tail advanced
// before Consume returns.
//
// The producer is another, untrusted process that can write anything
// anywhere in the ring at any time: every size and position read from it is
// checked before use, and a ring that breaks the format is an ErrCorrupt
// error, never a fault.
func (r *Ring) Consume(fn func(rec []byte) error) (n int, err error) {
	return r.ConsumeUpTo(0, fn)
}

// ConsumeUpTo is Consume that also stops after limit records, when limit
// is positive: a consumer that must also watch for other work (a request
// to stop, say) gets control back at a bounded interval.
func (r *Ring) ConsumeUpTo(limit int, fn func(rec []byte) error) (n int, err error) {
	start := r.tail
	published := start
	// Consumed records are zeroed in batches, just before the tail that
	// frees them is published, rather than one by one: the consumer then
	// stays off the cache lines producers are still filling.
	publish := func() {
		if r.tail != published {
			off := published & (r.size - 1)
			clear(r.data[off : off+(r.tail-published)])
			r.word(offTail).Store(r.tail)
			published = r.tail
		}
	}
	defer publish()
	for r.tail-start < r.size && (limit <= 0 || n < limit) {
		off := r.tail & (r.size - 1)
		sz := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		if sz == 0 {
			return n, nil
		}
		// A committed record lies below head. Reading head bounces its cache
		// line away from the producers, so do it only when the last value
		// read does not already vouch for this record.
		if r.tail+uint64(sz) > r.head {
			r.head = r.word(offHead).Load()
		}
		if sz%8 != 0 || sz < RecordHeader || uint64(sz) > r.size || r.tail+uint64(sz) > r.head {
			return n, fmt.Errorf("%w: record of %d bytes at position %d (head %d)", ErrCorrupt, sz, r.tail, r.head)
		}
		rec := r.data[off : off+uint64(sz) : off+uint64(sz)]
		ferr := fn(rec)
		r.tail += uint64(sz)
		n++
		if ferr != nil {
			return n, ferr
		}
		// Free room now and then during a long drain, so that producers
		// waiting for room (blocking mode) go on before the drain ends.
		if r.tail-published >= r.size/16 {
			publish()
		}
	}
	return n, nil
}
