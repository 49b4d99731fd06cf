package wire

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

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

// Release lets go of the shared memory while writers may still be inside
// the ring: it maps private anonymous memory over the whole range in one
// step (MAP_FIXED replaces a mapping atomically), so the memfd's pages are
// freed once the other side lets go too, and a late writer writes into
// private pages that nobody reads, without a fault. The range itself stays
// reserved until Close, which the caller may call once nothing can be
// writing any more.
func (r *Ring) Release() error {
	if r.base == nil {
		return nil
	}
	if _, err := unix.MmapPtr(-1, 0, r.base, r.mlen, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE); err != nil {
		return fmt.Errorf("release ring: %w", err)
	}
	return nil
}
