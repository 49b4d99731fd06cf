package x86

import (
	"encoding/binary"
	"unsafe"
)

// Implemented in access_amd64.s. Each performs exactly one access of its
// width, which is what device memory needs: a compiler-generated copy may
// split or merge accesses.
func cpuid(leaf, sub uint32) (a, b, c, d uint32)
func xgetbv0() (lo, hi uint32)
func load1(p unsafe.Pointer) uint8
func load2(p unsafe.Pointer) uint16
func load4(p unsafe.Pointer) uint32
func load8(p unsafe.Pointer) uint64
func store1(p unsafe.Pointer, v uint8)
func store2(p unsafe.Pointer, v uint16)
func store4(p unsafe.Pointer, v uint32)
func store8(p unsafe.Pointer, v uint64)
func copy16(dst, src unsafe.Pointer)
func copy32(dst, src unsafe.Pointer)
func copy64(dst, src unsafe.Pointer)
func cas1(p unsafe.Pointer, old, new uint8) bool
func cas2(p unsafe.Pointer, old, new uint16) bool
func cas4(p unsafe.Pointer, old, new uint32) bool
func cas8(p unsafe.Pointer, old, new uint64) bool

// LoadAt reads len(b) bytes at p into b with one load instruction of that
// width: MOVB, MOVW, MOVL, MOVQ, MOVOU (16), VMOVDQU (32) or VMOVDQU64 (64).
// It panics if len(b) is not one of 1, 2, 4, 8, 16, 32, 64: the width is
// chosen by the caller from a decoded instruction, so any other value is a
// bug. 32 and 64 bytes need AVX and AVX-512F.
func LoadAt(p unsafe.Pointer, b []byte) {
	switch len(b) {
	case 1:
		b[0] = load1(p)
	case 2:
		binary.LittleEndian.PutUint16(b, load2(p))
	case 4:
		binary.LittleEndian.PutUint32(b, load4(p))
	case 8:
		binary.LittleEndian.PutUint64(b, load8(p))
	case 16:
		copy16(unsafe.Pointer(&b[0]), p)
	case 32:
		copy32(unsafe.Pointer(&b[0]), p)
	case 64:
		copy64(unsafe.Pointer(&b[0]), p)
	default:
		panic("x86: LoadAt: bad access width")
	}
}

// StoreAt writes b at p with one store instruction of width len(b), as
// LoadAt reads.
func StoreAt(p unsafe.Pointer, b []byte) {
	switch len(b) {
	case 1:
		store1(p, b[0])
	case 2:
		store2(p, binary.LittleEndian.Uint16(b))
	case 4:
		store4(p, binary.LittleEndian.Uint32(b))
	case 8:
		store8(p, binary.LittleEndian.Uint64(b))
	case 16:
		copy16(p, unsafe.Pointer(&b[0]))
	case 32:
		copy32(p, unsafe.Pointer(&b[0]))
	case 64:
		copy64(p, unsafe.Pointer(&b[0]))
	default:
		panic("x86: StoreAt: bad access width")
	}
}

// CompareAndSwapAt atomically replaces old with new at p (LOCK CMPXCHG of
// width len(old)) and reports whether it did. len(old) must equal len(new)
// and be 1, 2, 4 or 8; otherwise it panics.
func CompareAndSwapAt(p unsafe.Pointer, old, new []byte) bool {
	if len(old) != len(new) {
		panic("x86: CompareAndSwapAt: width mismatch")
	}
	switch len(old) {
	case 1:
		return cas1(p, old[0], new[0])
	case 2:
		return cas2(p, binary.LittleEndian.Uint16(old), binary.LittleEndian.Uint16(new))
	case 4:
		return cas4(p, binary.LittleEndian.Uint32(old), binary.LittleEndian.Uint32(new))
	case 8:
		return cas8(p, binary.LittleEndian.Uint64(old), binary.LittleEndian.Uint64(new))
	}
	panic("x86: CompareAndSwapAt: bad access width")
}
