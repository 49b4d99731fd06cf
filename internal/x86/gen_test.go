package x86

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/mmiotrace/mmiotrace/internal/x86/x86test"
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
type memForm = x86test.Mem

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
		m.Seg, segBase = 0x64, g.n.fsBase
	case 1:
		m.Seg, segBase = 0x65, g.n.gsBase
	}
	if m.Seg != 0x64 && g.rnd.IntN(8) == 0 {
		m.Addr32 = true
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
	small := m.Seg != 0x64 // ea fits in a disp32
	form := g.rnd.IntN(7)
	if !small && form >= 4 {
		form = g.rnd.IntN(4)
	}
	garbage := func(v uint64) uint64 {
		if m.Addr32 {
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
		m.ModRM = mod<<6 | base&7
		if base&7 == 4 {
			m.Tail = append(m.Tail, 0x24) // SIB: no index, base rsp/r12
		}
		m.Tail = append(m.Tail, db...)
		m.RexB = base >= 8
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
		m.ModRM = mod<<6 | 4
		m.Tail = append(m.Tail, scale<<6|(index&7)<<3|base&7)
		m.Tail = append(m.Tail, db...)
		m.RexB, m.RexX = base >= 8, index >= 8
	case 4: // [rip + disp32]
		m.ModRM = 5
		m.RIP, m.RIPOff, m.EA = true, 0, ea
		m.Tail = make([]byte, 4)
	case 5: // [disp32]
		m.ModRM = 4
		m.Tail = append(m.Tail, 0x25)
		m.Tail = binary.LittleEndian.AppendUint32(m.Tail, uint32(ea))
	case 6: // [index*scale + disp32]
		avoid |= 1 << 4
		index := pick()
		scale := byte(g.rnd.IntN(4))
		iv := uint64(g.rnd.IntN(1 << 16))
		g.st.GPR[index] = garbage(iv)
		m.ModRM = 4
		m.Tail = append(m.Tail, scale<<6|(index&7)<<3|5)
		m.Tail = binary.LittleEndian.AppendUint32(m.Tail, uint32(ea-iv<<scale))
		m.RexX = index >= 8
	}
	return m
}

// enc is the encoder of the instruction under test, at the fixture's code.
func (g *gen) enc() x86test.Encoder { return x86test.Encoder{Rand: g.rnd, At: g.n.code} }

// legacy, vex and evex encode an instruction around the operand m (see
// package x86test).
func (g *gen) legacy(m memForm, pre []byte, w, forceREX bool, op []byte, reg uint8, imm []byte) []byte {
	return g.enc().Legacy(m, pre, w, forceREX, op, int(reg), imm)
}

func (g *gen) vex(m memForm, mmmmm byte, pp byte, w bool, L byte, op byte, reg uint8) []byte {
	return g.enc().VEX(m, mmmmm, pp, w, L, op, int(reg))
}

func (g *gen) evex(m memForm, pp byte, w bool, LL byte, z bool, aaa byte, op byte, reg uint8) []byte {
	return g.enc().EVEX(m, pp, w, LL, z, aaa, op, int(reg))
}

// imm is an immediate of n random bytes.
func (g *gen) imm(n int) []byte { return x86test.Imm(g.value(), n) }

// opsize picks an operand size of 2, 4 or 8 bytes, with the prefix bytes
// and REX.W it needs.
func (g *gen) opsize() (size int, pre []byte, w bool) { return x86test.OpSize(g.rnd) }

var immLen = x86test.ImmLen
