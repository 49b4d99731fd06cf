package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
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
// room counts the event in lost and drops it: nothing blocks, nothing is
// silently missing.
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
	// DefaultRingSize is used when a collector asks for size 0.
	DefaultRingSize = 4 << 20
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

// ErrCorrupt reports a ring whose contents break the format.
var ErrCorrupt = errors.New("tracepoint ring corrupt")

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

// CreateRing makes a sealed memfd holding a ring of RoundRingSize(size)
// bytes and maps it. The caller passes the returned file to the consumer and
// may close it afterwards; the mapping stays valid until Close.
func CreateRing(size int) (*Ring, *os.File, error) {
	size = RoundRingSize(size)
	fd, err := unix.MemfdCreate("mmiotrace-tracepoints", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "mmiotrace-tracepoints")
	if err := f.Truncate(int64(HeaderSize + size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("size ring memfd: %w", err)
	}
	// Seal the size: a consumer mapping the file can then never be hit by
	// SIGBUS because the producer shrank it.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("seal ring memfd: %w", err)
	}
	r, err := mapRing(int(f.Fd()), uint64(size))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	binary.LittleEndian.PutUint64(r.header(offMagic, 8), Magic)
	binary.LittleEndian.PutUint32(r.header(offVersion, 4), Version)
	binary.LittleEndian.PutUint64(r.header(offSize, 8), uint64(size))
	return r, f, nil
}

// OpenRing maps the ring in fd, which must hold exactly size data bytes and
// be sealed against shrinking. The consumer uses it: the producer is another,
// untrusted process, so everything it could have changed is checked.
func OpenRing(fd int, size int) (*Ring, error) {
	if size < MinRingSize || size > MaxRingSize || size&(size-1) != 0 {
		return nil, fmt.Errorf("%w: bad ring size %d", ErrCorrupt, size)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("ring memfd seals: %w", err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("%w: ring memfd not sealed against shrinking", ErrCorrupt)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("ring memfd stat: %w", err)
	}
	if st.Size != int64(HeaderSize+size) {
		return nil, fmt.Errorf("%w: ring memfd holds %d bytes, want %d", ErrCorrupt, st.Size, HeaderSize+size)
	}
	r, err := mapRing(fd, uint64(size))
	if err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint64(r.header(offMagic, 8)) != Magic ||
		binary.LittleEndian.Uint32(r.header(offVersion, 4)) != Version ||
		binary.LittleEndian.Uint64(r.header(offSize, 8)) != uint64(size) {
		r.Close()
		return nil, fmt.Errorf("%w: bad ring header", ErrCorrupt)
	}
	r.tail = r.word(offTail).Load()
	return r, nil
}

// mapRing reserves one range for header, data and mirror, then maps the file
// over it twice: [header|data] and then [data] again. Both mappings are
// populated up front (MAP_POPULATE): otherwise the first pass of producers
// through the ring takes a page fault every 4 KiB, inside Fire.
func mapRing(fd int, size uint64) (*Ring, error) {
	total := uintptr(HeaderSize + 2*size)
	base, err := unix.MmapPtr(-1, 0, nil, total, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("reserve ring address range: %w", err)
	}
	if _, err := unix.MmapPtr(fd, 0, base, uintptr(HeaderSize+size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED|unix.MAP_POPULATE); err != nil {
		unix.MunmapPtr(base, total)
		return nil, fmt.Errorf("map ring: %w", err)
	}
	mirror := unsafe.Add(base, HeaderSize+size)
	if _, err := unix.MmapPtr(fd, HeaderSize, mirror, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED|unix.MAP_POPULATE); err != nil {
		unix.MunmapPtr(base, total)
		return nil, fmt.Errorf("map ring mirror: %w", err)
	}
	return &Ring{
		base: base,
		mlen: total,
		data: unsafe.Slice((*byte)(unsafe.Add(base, HeaderSize)), 2*size),
		size: size,
		hdr:  base,
	}, nil
}

// Close unmaps the ring. The caller guarantees nothing still uses it.
func (r *Ring) Close() error {
	if r.base == nil {
		return nil
	}
	err := unix.MunmapPtr(r.base, r.mlen)
	r.base, r.data, r.hdr = nil, nil, nil
	if err != nil {
		return fmt.Errorf("unmap ring: %w", err)
	}
	return nil
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

// FlagTIDs means records carry real thread ids.
const FlagTIDs = 1

// Lost returns how many events producers dropped because the ring was full.
func (r *Ring) Lost() uint64 { return r.word(offLost).Load() }

// Reserve claims n bytes (a multiple of 8, at least RecordHeader) for one
// record and returns its position and memory. It fails, counting the event as
// lost, when the ring has no room. It never blocks and takes no lock.
func (r *Ring) Reserve(n uint32) (pos uint64, rec []byte, ok bool) {
	head, tail := r.word(offHead), r.word(offTail)
	for {
		h := head.Load()
		// tail only grows, so a stale value can only make the room look
		// smaller, never larger: the check is safe without a lock.
		if h+uint64(n)-tail.Load() > r.size {
			r.word(offLost).Add(1)
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
// record slice is valid only during its call. Consumed records are zeroed
// and the tail advanced before Consume returns.
func (r *Ring) Consume(fn func(rec []byte) error) (n int, err error) {
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
	for r.tail-start < r.size {
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
		// Free room now and then during a long drain.
		if r.tail-published >= r.size/8 {
			publish()
		}
	}
	return n, nil
}
