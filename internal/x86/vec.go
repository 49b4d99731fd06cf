package x86

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// VecRegs holds the vector state that vector moves use: ZMM0-31 (the low 16
// bytes of each are the XMM register, the low 32 the YMM register) and the
// opmask registers k0-k7.
type VecRegs struct {
	Z [32][64]byte
	K [8]uint64
}

// XSAVE state components that hold VecRegs.
const (
	xfeatSSE      = 1 // XMM0-15, in the legacy region
	xfeatAVX      = 2 // YMM0-15 bits 128-255
	xfeatOpmask   = 5 // k0-k7
	xfeatZMMHi256 = 6 // ZMM0-15 bits 256-511
	xfeatHi16ZMM  = 7 // ZMM16-31
)

const (
	xsaveLegacyXMM = 160 // offset of XMM0 in the legacy (FXSAVE) region
	xsaveHeader    = 512 // offset of the XSAVE header (XSTATE_BV first)
	xsaveMin       = xsaveHeader + 64
)

// xcomp describes where one state component lives in the standard-format
// XSAVE area.
type xcomp struct {
	off, size int
}

// xlayout is the machine's XSAVE layout, found with CPUID leaf 0xD, and the
// components the OS enabled in XCR0.
var xlayout = sync.OnceValues(func() ([8]xcomp, uint64) {
	var l [8]xcomp
	l[xfeatSSE] = xcomp{xsaveLegacyXMM, 16 * 16}
	for _, c := range []int{xfeatAVX, xfeatOpmask, xfeatZMMHi256, xfeatHi16ZMM} {
		size, off, _, _ := cpuid(0xD, uint32(c))
		l[c] = xcomp{int(off), int(size)}
	}
	lo, hi := xgetbv0()
	return l, uint64(hi)<<32 | uint64(lo)
})

// component returns the part of buf that holds component c, or nil if the
// machine does not have it or buf is too short to hold it.
func component(buf []byte, c int) []byte {
	l, xcr0 := xlayout()
	x := l[c]
	if xcr0&(1<<c) == 0 || x.size == 0 || x.off+x.size > len(buf) {
		return nil
	}
	return buf[x.off : x.off+x.size]
}

var errCompacted = errors.New("x86: XSAVE area is in compacted format")

func checkXSave(buf []byte) (xstateBV uint64, err error) {
	if len(buf) < xsaveMin {
		return 0, fmt.Errorf("x86: XSAVE area of %d bytes, need at least %d", len(buf), xsaveMin)
	}
	if binary.LittleEndian.Uint64(buf[xsaveHeader+8:])&(1<<63) != 0 {
		return 0, errCompacted
	}
	return binary.LittleEndian.Uint64(buf[xsaveHeader:]), nil
}

// FromXSave fills v from buf, an XSAVE area in standard format as
// PTRACE_GETREGSET with NT_X86_XSTATE returns it. Components that XSTATE_BV
// marks as in their initial state, or that the machine lacks, read as zero.
func (v *VecRegs) FromXSave(buf []byte) error {
	bv, err := checkXSave(buf)
	if err != nil {
		return err
	}
	*v = VecRegs{}
	if c := component(buf, xfeatSSE); c != nil && bv&(1<<xfeatSSE) != 0 {
		for i := 0; i < 16; i++ {
			copy(v.Z[i][0:16], c[i*16:])
		}
	}
	if c := component(buf, xfeatAVX); c != nil && bv&(1<<xfeatAVX) != 0 {
		for i := 0; i < 16; i++ {
			copy(v.Z[i][16:32], c[i*16:])
		}
	}
	if c := component(buf, xfeatOpmask); c != nil && bv&(1<<xfeatOpmask) != 0 {
		for i := 0; i < 8; i++ {
			v.K[i] = binary.LittleEndian.Uint64(c[i*8:])
		}
	}
	if c := component(buf, xfeatZMMHi256); c != nil && bv&(1<<xfeatZMMHi256) != 0 {
		for i := 0; i < 16; i++ {
			copy(v.Z[i][32:64], c[i*32:])
		}
	}
	if c := component(buf, xfeatHi16ZMM); c != nil && bv&(1<<xfeatHi16ZMM) != 0 {
		for i := 0; i < 16; i++ {
			copy(v.Z[16+i][:], c[i*64:])
		}
	}
	return nil
}

// ToXSave writes v into buf, an XSAVE area in standard format (normally the
// one FromXSave read, to be given back with PTRACE_SETREGSET), and marks the
// written components in XSTATE_BV. Components the machine lacks, or that do
// not fit in buf, are left out. Nothing else in buf changes.
func (v *VecRegs) ToXSave(buf []byte) error {
	bv, err := checkXSave(buf)
	if err != nil {
		return err
	}
	if c := component(buf, xfeatSSE); c != nil {
		for i := 0; i < 16; i++ {
			copy(c[i*16:i*16+16], v.Z[i][0:16])
		}
		bv |= 1 << xfeatSSE
	}
	if c := component(buf, xfeatAVX); c != nil {
		for i := 0; i < 16; i++ {
			copy(c[i*16:i*16+16], v.Z[i][16:32])
		}
		bv |= 1 << xfeatAVX
	}
	if c := component(buf, xfeatOpmask); c != nil {
		for i := 0; i < 8; i++ {
			binary.LittleEndian.PutUint64(c[i*8:], v.K[i])
		}
		bv |= 1 << xfeatOpmask
	}
	if c := component(buf, xfeatZMMHi256); c != nil {
		for i := 0; i < 16; i++ {
			copy(c[i*32:i*32+32], v.Z[i][32:64])
		}
		bv |= 1 << xfeatZMMHi256
	}
	if c := component(buf, xfeatHi16ZMM); c != nil {
		for i := 0; i < 16; i++ {
			copy(c[i*64:i*64+64], v.Z[16+i][:])
		}
		bv |= 1 << xfeatHi16ZMM
	}
	binary.LittleEndian.PutUint64(buf[xsaveHeader:], bv)
	return nil
}
