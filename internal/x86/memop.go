package x86

import (
	"math/bits"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// MemOperand describes the instruction's first explicit memory operand, for
// records when the instruction is single-stepped rather than emulated: its
// linear address (FS/GS base applied, RIP-relative from RIP+Len), its size
// in bytes, and whether the instruction reads and/or writes it. ok is false
// if the instruction has no memory operand. For string instructions it is
// the element at RDI (RSI for lods); for bt/bts/btr/btc with a register bit
// offset it is the unit that holds the bit.
//
// For emulated instructions the answer is exact. For the rest it is derived
// from x86asm's decoding, and read/write follow the usual pattern (a
// destination operand is written, and read unless the instruction is a
// plain store).
func (in *Inst) MemOperand(r *Regs) (addr uint64, size int, read, write bool, ok bool) {
	p := &in.p
	next := r.Rip + uint64(in.Len)
	switch p.kind {
	case kNone:
		return in.genericMemOperand(r)
	case kMovs, kStos:
		return r.Rdi, int(p.size), p.kind == kMovs, true, true
	case kLods:
		return segBase(r, p.mem.seg) + r.Rsi, int(p.size), true, false, true
	case kBT:
		addr = p.mem.ea(r, next)
		if !p.immOK {
			size := int(p.size)
			bitsz := size * 8
			off := int64(signExtend(getGPR(r, p.reg, false, size), size))
			addr += uint64((off >> bits.TrailingZeros64(uint64(bitsz))) * int64(size))
		}
		return addr, int(p.msize), p.read, p.write, true
	}
	return p.mem.ea(r, next), int(p.msize), p.read, p.write, true
}

// genericMemOperand handles instructions outside the emulated subset.
func (in *Inst) genericMemOperand(r *Regs) (addr uint64, size int, read, write bool, ok bool) {
	op := &in.Op
	idx := -1
	var m x86asm.Mem
	for i, a := range op.Args {
		if a == nil {
			break
		}
		if mm, isMem := a.(x86asm.Mem); isMem {
			idx, m = i, mm
			break
		}
	}
	if idx < 0 {
		return 0, 0, false, false, false
	}
	next := r.Rip + uint64(in.Len)
	switch {
	case m.Base == x86asm.RIP || m.Base == x86asm.EIP:
		addr = next
	case m.Base != 0:
		addr = regValue(r, m.Base)
	}
	if m.Index != 0 {
		addr += regValue(r, m.Index) * uint64(m.Scale)
	}
	addr += uint64(m.Disp)
	if op.AddrSize == 32 {
		addr = uint64(uint32(addr))
	}
	switch m.Segment {
	case x86asm.FS:
		addr += r.Fs_base
	case x86asm.GS:
		addr += r.Gs_base
	default:
		// VEX/EVEX decoding does not fill in Segment.
		addr += segBase(r, in.segPrefix())
	}
	size = op.MemBytes
	if size == 0 {
		size = op.DataSize / 8
	}
	if idx > 0 {
		return addr, size, true, false, true
	}
	name := op.Op.String()
	switch {
	case strings.HasPrefix(name, "CMP") && !strings.HasPrefix(name, "CMPXCHG"),
		strings.HasPrefix(name, "TEST"), name == "BT", strings.HasPrefix(name, "PUSH"),
		strings.HasPrefix(name, "PREFETCH"), strings.HasPrefix(name, "CLFLUSH"),
		strings.HasPrefix(name, "UCOMI"), strings.HasPrefix(name, "COMI"),
		strings.HasPrefix(name, "VUCOMI"), strings.HasPrefix(name, "VCOMI"),
		strings.HasPrefix(name, "FLD"), strings.HasPrefix(name, "FILD"),
		strings.HasPrefix(name, "FCOM"), strings.HasPrefix(name, "FUCOM"),
		strings.HasPrefix(name, "FICOM"), strings.HasPrefix(name, "JMP"),
		strings.HasPrefix(name, "CALL"), strings.HasPrefix(name, "LODS"),
		strings.HasPrefix(name, "SCAS"), strings.HasPrefix(name, "LGDT"),
		strings.HasPrefix(name, "LIDT"), strings.HasPrefix(name, "FXRSTOR"),
		strings.HasPrefix(name, "XRSTOR"), strings.HasPrefix(name, "LDMXCSR"),
		strings.HasPrefix(name, "VLDMXCSR"):
		return addr, size, true, false, true
	case strings.HasPrefix(name, "MOV"), strings.HasPrefix(name, "VMOV"),
		strings.HasPrefix(name, "SET"), strings.HasPrefix(name, "STOS"),
		strings.HasPrefix(name, "FST"), strings.HasPrefix(name, "FIST"),
		strings.HasPrefix(name, "FNST"), strings.HasPrefix(name, "FBSTP"),
		strings.HasPrefix(name, "STMXCSR"), strings.HasPrefix(name, "VSTMXCSR"),
		strings.HasPrefix(name, "FXSAVE"), strings.HasPrefix(name, "XSAVE"),
		strings.HasPrefix(name, "PEXTR"), strings.HasPrefix(name, "VPEXTR"),
		strings.HasPrefix(name, "EXTRACTPS"), strings.HasPrefix(name, "VEXTRACT"),
		strings.HasPrefix(name, "VPMOV"), strings.HasPrefix(name, "VCOMPRESS"),
		strings.HasPrefix(name, "VPCOMPRESS"), strings.HasPrefix(name, "VSCATTER"),
		strings.HasPrefix(name, "VPSCATTER"), strings.HasPrefix(name, "POP"),
		strings.HasPrefix(name, "SGDT"), strings.HasPrefix(name, "SIDT"),
		strings.HasPrefix(name, "SLDT"), strings.HasPrefix(name, "STR"),
		strings.HasPrefix(name, "VCVTPS2PH"), strings.HasPrefix(name, "VMASKMOV"),
		strings.HasPrefix(name, "VPMASKMOV"):
		// VMASKMOV stores only selected elements; count it as a store.
		return addr, size, false, true, true
	}
	return addr, size, true, true, true
}

// vexPrefix returns the VEX or EVEX prefix byte, if the instruction has one.
func (in *Inst) vexPrefix() (byte, bool) {
	for _, p := range in.Op.Prefix {
		if p == 0 {
			break
		}
		if p.IsVEX() || p.IsEVEX() {
			return byte(p), true
		}
	}
	return 0, false
}

// ripRelVEX reports whether a VEX/EVEX instruction's memory operand is
// RIP-relative (ModRM mod=00 rm=101).
func (in *Inst) ripRelVEX() bool {
	if _, ok := in.vexPrefix(); !ok {
		return false
	}
	return in.rawModRM()&0xC7 == 0x05
}

// rawModRM finds the ModRM byte of a VEX/EVEX instruction: after the legacy
// prefixes, the 2-, 3- or 4-byte VEX/EVEX prefix and one opcode byte.
func (in *Inst) rawModRM() byte {
	c := in.raw[:in.Len]
	i := 0
	for i < len(c) && isLegacyPrefix(c[i]) {
		i++
	}
	if i >= len(c) {
		return 0
	}
	switch c[i] {
	case 0xC5:
		i += 3
	case 0xC4:
		i += 4
	case 0x62:
		i += 5
	default:
		return 0
	}
	if i >= len(c) {
		return 0
	}
	return c[i]
}

// segPrefix returns the FS/GS override among the legacy prefixes.
func (in *Inst) segPrefix() uint8 {
	seg := uint8(segNone)
	for _, b := range in.raw[:in.Len] {
		if !isLegacyPrefix(b) {
			break
		}
		switch b {
		case 0x64:
			seg = segFS
		case 0x65:
			seg = segGS
		case 0x26, 0x2E, 0x36, 0x3E:
			seg = segNone
		}
	}
	return seg
}

func isLegacyPrefix(b byte) bool {
	switch b {
	case 0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65:
		return true
	}
	return false
}

// regValue reads a general register named by x86asm, at its width, or
// RIP; 0 for anything else.
func regValue(r *Regs, reg x86asm.Reg) uint64 {
	if reg == x86asm.RIP {
		return r.Rip
	}
	v, _ := RegValue(r, reg)
	return v
}
