package x86test

import (
	"encoding/binary"
	"math/rand/v2"
)

// Mem is a memory operand, encoded: ModRM's mod and rm (the encoder ORs in
// reg), the SIB byte and displacement that follow it, and the REX bits and
// prefixes they need.
type Mem struct {
	ModRM  byte
	Tail   []byte // SIB and displacement
	RexX   bool
	RexB   bool
	RIP    bool   // RIP-relative: the disp32 at Tail[RIPOff] is set, once the instruction's length is known, so that the operand addresses EA
	RIPOff int    // offset of that disp32 in Tail
	EA     uint64 // the effective address of a RIP-relative operand
	Seg    byte   // segment override prefix (0x64, 0x65), or 0
	Addr32 bool   // the 0x67 address-size prefix
}

// Prefixes returns the operand's prefixes: segment override, address size.
func (m *Mem) Prefixes() []byte {
	var b []byte
	if m.Seg != 0 {
		b = append(b, m.Seg)
	}
	if m.Addr32 {
		b = append(b, 0x67)
	}
	return b
}

// Encoder encodes instructions placed at address At (for RIP-relative
// operands), choosing with Rand between equivalent encodings where the
// instruction set has two (the 2- and 3-byte VEX forms).
type Encoder struct {
	Rand *rand.Rand
	At   uint64
}

// Finish appends ModRM (with reg), the operand's tail and imm to b, and
// sets a RIP-relative displacement now that the length is known.
func (e Encoder) Finish(b []byte, m Mem, reg int, imm []byte) []byte {
	b = append(b, m.ModRM|byte(reg&7)<<3)
	start := len(b)
	b = append(b, m.Tail...)
	b = append(b, imm...)
	if m.RIP {
		next := e.At + uint64(len(b))
		binary.LittleEndian.PutUint32(b[start+m.RIPOff:], uint32(m.EA-next))
	}
	return b
}

// Legacy encodes a legacy (non-VEX) instruction: the operand's prefixes,
// pre, a REX prefix when one is needed or forceREX, the opcode op, and
// the rest (Finish).
func (e Encoder) Legacy(m Mem, pre []byte, w, forceREX bool, op []byte, reg int, imm []byte) []byte {
	b := append(m.Prefixes(), pre...)
	rex := byte(0x40)
	if w {
		rex |= 8
	}
	if reg&8 != 0 {
		rex |= 4
	}
	if m.RexX {
		rex |= 2
	}
	if m.RexB {
		rex |= 1
	}
	if rex != 0x40 || forceREX {
		b = append(b, rex)
	}
	b = append(b, op...)
	return e.Finish(b, m, reg, imm)
}

// VEX encodes a VEX instruction (pp: 0 none, 1 66, 2 F3, 3 F2; L: 0 or
// 1), in the 2-byte form half the time where that form can say it.
func (e Encoder) VEX(m Mem, mmmmm, pp byte, w bool, L byte, op byte, reg int) []byte {
	b := m.Prefixes()
	R, X, B, W := byte(1), byte(1), byte(1), byte(0)
	if reg&8 != 0 {
		R = 0
	}
	if m.RexX {
		X = 0
	}
	if m.RexB {
		B = 0
	}
	if w {
		W = 1
	}
	if mmmmm == 1 && X == 1 && B == 1 && W == 0 && e.Rand.IntN(2) == 0 {
		b = append(b, 0xC5, R<<7|0xF<<3|L<<2|pp)
	} else {
		b = append(b, 0xC4, R<<7|X<<6|B<<5|mmmmm, W<<7|0xF<<3|L<<2|pp)
	}
	return e.Finish(append(b, op), m, reg, nil)
}

// EVEX encodes an EVEX instruction in map 0F (LL: 0, 1, 2; z: zeroing;
// aaa: the opmask register, 0 for none).
func (e Encoder) EVEX(m Mem, pp byte, w bool, LL byte, z bool, aaa byte, op byte, reg int) []byte {
	b := m.Prefixes()
	p0 := byte(0xF0 | 1) // R X B R' all 1 (inverted), mm=01
	if reg&8 != 0 {
		p0 &^= 0x80
	}
	if m.RexX {
		p0 &^= 0x40
	}
	if m.RexB {
		p0 &^= 0x20
	}
	if reg&16 != 0 {
		p0 &^= 0x10
	}
	p1 := byte(0x7C | pp) // vvvv=1111, bit 2 set
	if w {
		p1 |= 0x80
	}
	p2 := LL<<5 | 0x08 | aaa // V'=1
	if z {
		p2 |= 0x80
	}
	return e.Finish(append(b, 0x62, p0, p1, p2, op), m, reg, nil)
}

// Imm returns the low n bytes of v, little endian: an immediate.
func Imm(v uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// OpSize picks an operand size of 2, 4 or 8 bytes and returns the prefix
// bytes and REX.W it needs.
func OpSize(r *rand.Rand) (size int, pre []byte, w bool) {
	switch r.IntN(3) {
	case 0:
		return 2, []byte{0x66}, false
	case 1:
		return 4, nil, false
	}
	return 8, nil, true
}

// ImmLen is the length of an ALU instruction's full immediate for an
// operand of size bytes: 2 for 16 bits, else 4 (sign-extended to 64).
func ImmLen(size int) int {
	if size == 2 {
		return 2
	}
	return 4
}
