package x86

import (
	"encoding/binary"
	"math/rand/v2"
)

// gen builds random instances of instructions for the differential tests:
// a random register and memory state, and an encoding whose memory operand
// lands in the native executor's buffer.
type gen struct {
	rnd *rand.Rand
	n   *native
	st  nstate
	mem [nativeMemSize]byte

	faults int // cases where the CPU faulted (and the emulator declined)
}

func (g *gen) reset() {
	for i := range g.st.GPR {
		g.st.GPR[i] = g.value()
	}
	// Reserved bit 1 and IF are always set; the six status flags and DF are
	// random.
	g.st.RFlags = 0x202 | g.rnd.Uint64()&(arithFlags|flagDF)
	for i := range g.st.K {
		g.st.K[i] = g.rnd.Uint64()
	}
	for i := range g.st.Z {
		for j := 0; j < 64; j += 8 {
			binary.LittleEndian.PutUint64(g.st.Z[i][j:], g.rnd.Uint64())
		}
	}
	for j := 0; j < len(g.mem); j += 8 {
		binary.LittleEndian.PutUint64(g.mem[j:], g.value())
	}
}

// value returns a random 64-bit value biased towards the edges where flags
// change: small numbers, sign boundaries, all ones.
func (g *gen) value() uint64 {
	switch g.rnd.IntN(8) {
	case 0:
		return uint64(g.rnd.IntN(3))
	case 1:
		return ^uint64(0) - uint64(g.rnd.IntN(2))
	case 2:
		return 1<<(8*(1<<g.rnd.IntN(4))-1) - uint64(g.rnd.IntN(3)) + 1 // near a sign bit
	case 3:
		return uint64(g.rnd.IntN(256))
	}
	return g.rnd.Uint64()
}

// memForm is an encoded memory operand.
type memForm struct {
	modrm  byte   // mod and rm; the caller ORs in reg
	tail   []byte // SIB and displacement
	rexX   bool
	rexB   bool
	rip    bool
	ripOff int    // offset of the disp32 in tail when rip
	eaRIP  uint64 // wanted effective address, for the RIP fix-up
	seg    byte   // 0x64, 0x65 or 0
	addr32 bool
}

// offset picks an offset in the buffer for an access of size bytes; aligned
// (to size) with probability 3/4 when align is set, else anywhere.
func (g *gen) offset(size int, align bool) int {
	off := g.rnd.IntN(nativeMemSize - size + 1)
	if align && g.rnd.IntN(4) != 0 {
		off &^= size - 1
	}
	return off
}

// memOp encodes a memory operand addressing buffer offset off. avoid is a
// bit set of registers that must not be used for the address. dispN is the
// EVEX disp8 scale (1 otherwise).
func (g *gen) memOp(off int, avoid uint32, dispN int) memForm {
	var m memForm
	target := g.n.mem + uint64(off)
	segBase := uint64(0)
	switch g.rnd.IntN(8) {
	case 0:
		m.seg, segBase = 0x64, g.n.fsBase
	case 1:
		m.seg, segBase = 0x65, g.n.gsBase
	}
	if m.seg != 0x64 && g.rnd.IntN(8) == 0 {
		m.addr32 = true
	}
	ea := target - segBase
	pick := func() uint8 {
		for {
			r := uint8(g.rnd.IntN(16))
			if avoid&(1<<r) == 0 {
				avoid |= 1 << r
				return r
			}
		}
	}
	small := m.seg != 0x64 // ea fits in a disp32
	form := g.rnd.IntN(7)
	if !small && form >= 4 {
		form = g.rnd.IntN(4)
	}
	garbage := func(v uint64) uint64 {
		if m.addr32 {
			return v&0xFFFFFFFF | g.rnd.Uint64()<<32
		}
		return v
	}
	disp := func(mod byte) (int64, []byte) {
		switch mod {
		case 1:
			k := int64(int8(g.rnd.Uint32()))
			return k * int64(dispN), []byte{byte(k)}
		case 2:
			d := int64(int32(g.rnd.Uint32())) >> g.rnd.IntN(32)
			var b [4]byte
			binary.LittleEndian.PutUint32(b[:], uint32(d))
			return d, b[:]
		}
		return 0, nil
	}
	switch form {
	case 0, 1, 2: // [base + disp]
		base := pick()
		mod := byte(form)
		if mod == 0 && base&7 == 5 {
			mod = 1 // [rbp] and [r13] need a displacement
		}
		d, db := disp(mod)
		g.st.GPR[base] = garbage(ea - uint64(d))
		m.modrm = mod<<6 | base&7
		if base&7 == 4 {
			m.tail = append(m.tail, 0x24) // SIB: no index, base rsp/r12
		}
		m.tail = append(m.tail, db...)
		m.rexB = base >= 8
	case 3: // [base + index*scale + disp]
		base := pick()
		avoid |= 1 << 4 // rsp cannot be an index
		index := pick()
		scale := byte(g.rnd.IntN(4))
		mod := byte(g.rnd.IntN(3))
		if mod == 0 && base&7 == 5 {
			mod = 1
		}
		d, db := disp(mod)
		iv := g.value()
		g.st.GPR[index] = iv
		g.st.GPR[base] = garbage(ea - iv<<scale - uint64(d))
		m.modrm = mod<<6 | 4
		m.tail = append(m.tail, scale<<6|(index&7)<<3|base&7)
		m.tail = append(m.tail, db...)
		m.rexB, m.rexX = base >= 8, index >= 8
	case 4: // [rip + disp32]
		m.modrm = 5
		m.rip, m.ripOff, m.eaRIP = true, 0, ea
		m.tail = make([]byte, 4)
	case 5: // [disp32]
		m.modrm = 4
		m.tail = append(m.tail, 0x25)
		m.tail = binary.LittleEndian.AppendUint32(m.tail, uint32(ea))
	case 6: // [index*scale + disp32]
		avoid |= 1 << 4
		index := pick()
		scale := byte(g.rnd.IntN(4))
		iv := uint64(g.rnd.IntN(1 << 16))
		g.st.GPR[index] = garbage(iv)
		m.modrm = 4
		m.tail = append(m.tail, scale<<6|(index&7)<<3|5)
		m.tail = binary.LittleEndian.AppendUint32(m.tail, uint32(ea-iv<<scale))
		m.rexX = index >= 8
	}
	return m
}

// prefixes returns the memory operand's segment and address-size prefixes.
func (m *memForm) prefixes() []byte {
	var b []byte
	if m.seg != 0 {
		b = append(b, m.seg)
	}
	if m.addr32 {
		b = append(b, 0x67)
	}
	return b
}

// finish appends ModRM, SIB, displacement and immediate to b and fixes a
// RIP-relative displacement now that the length is known.
func (g *gen) finish(b []byte, m memForm, reg uint8, imm []byte) []byte {
	b = append(b, m.modrm|(reg&7)<<3)
	start := len(b)
	b = append(b, m.tail...)
	b = append(b, imm...)
	if m.rip {
		next := g.n.code + uint64(len(b))
		binary.LittleEndian.PutUint32(b[start+m.ripOff:], uint32(m.eaRIP-next))
	}
	return b
}

// legacy encodes a legacy (non-VEX) instruction with a memory operand.
func (g *gen) legacy(m memForm, pre []byte, w, forceREX bool, op []byte, reg uint8, imm []byte) []byte {
	b := m.prefixes()
	b = append(b, pre...)
	rex := byte(0x40)
	if w {
		rex |= 8
	}
	if reg&8 != 0 {
		rex |= 4
	}
	if m.rexX {
		rex |= 2
	}
	if m.rexB {
		rex |= 1
	}
	if rex != 0x40 || forceREX {
		b = append(b, rex)
	}
	b = append(b, op...)
	return g.finish(b, m, reg, imm)
}

// vex encodes a VEX instruction (pp: 0 none, 1 66, 2 F3, 3 F2; L: 0 or 1).
func (g *gen) vex(m memForm, mmmmm byte, pp byte, w bool, L byte, op byte, reg uint8) []byte {
	b := m.prefixes()
	R, X, B := byte(1), byte(1), byte(1)
	if reg&8 != 0 {
		R = 0
	}
	if m.rexX {
		X = 0
	}
	if m.rexB {
		B = 0
	}
	W := byte(0)
	if w {
		W = 1
	}
	if mmmmm == 1 && X == 1 && B == 1 && W == 0 && g.rnd.IntN(2) == 0 {
		b = append(b, 0xC5, R<<7|0xF<<3|L<<2|pp)
	} else {
		b = append(b, 0xC4, R<<7|X<<6|B<<5|mmmmm, W<<7|0xF<<3|L<<2|pp)
	}
	b = append(b, op)
	return g.finish(b, m, reg, nil)
}

// evex encodes an EVEX instruction in map 0F (LL: 0, 1, 2; aaa: opmask).
func (g *gen) evex(m memForm, pp byte, w bool, LL byte, z bool, aaa byte, op byte, reg uint8) []byte {
	b := m.prefixes()
	p0 := byte(0xF0 | 1) // R X B R' all 1 (inverted), mm=01
	if reg&8 != 0 {
		p0 &^= 0x80
	}
	if m.rexX {
		p0 &^= 0x40
	}
	if m.rexB {
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
	b = append(b, 0x62, p0, p1, p2, op)
	return g.finish(b, m, reg, nil)
}

func (g *gen) imm(n int) []byte {
	b := make([]byte, n)
	v := g.value()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// opsize picks an operand size of 2, 4 or 8 bytes and returns the prefix
// bytes and REX.W it needs.
func (g *gen) opsize() (size int, pre []byte, w bool) {
	switch g.rnd.IntN(3) {
	case 0:
		return 2, []byte{0x66}, false
	case 1:
		return 4, nil, false
	}
	return 8, nil, true
}

func immLen(size int) int {
	if size == 2 {
		return 2
	}
	return 4
}
