package optprobe

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/internal/x86/x86test"
)

// A generator of random probed instructions for the differential tests:
// every class Classify takes (and some it refuses), every operand size,
// every addressing form, with a register state that makes the access land
// where the case wants it.

type gen struct {
	rnd *rand.Rand
	f   *fixture
	st  state
}

// kase is one generated case: the site's code (the probed instruction,
// then fillers, then a jump to the fixture's exit) and the state.
type kase struct {
	name  string
	code  []byte
	insn  int   // length of the probed instruction
	lens  []int // pair cases: the lengths of both probed instructions
	width int
	st    state
}

// site is where the cases' code goes in the fixture.
func (g *gen) site() uint64 { return g.f.Code + 0x100 }

// value returns a random value biased towards edges where flags change.
func (g *gen) value() uint64 {
	switch g.rnd.IntN(6) {
	case 0:
		return uint64(g.rnd.IntN(3))
	case 1:
		return ^uint64(0) - uint64(g.rnd.IntN(2))
	case 2:
		return 1<<(8*(1<<g.rnd.IntN(4))-1) - uint64(g.rnd.IntN(3)) + 1
	}
	return g.rnd.Uint64()
}

func (g *gen) reset() {
	for i := range g.st.GPR {
		g.st.GPR[i] = g.value()
	}
	g.st.GPR[rsp] = g.f.StackLo + 0x80000 + uint64(g.rnd.IntN(64))*8
	g.st.RFlags = 0x202 | g.rnd.Uint64()&0x8D5 // the six status flags
	for i := range g.st.K {
		g.st.K[i] = g.rnd.Uint64()
	}
	for i := range g.st.Z {
		for j := 0; j < 64; j += 8 {
			binary.LittleEndian.PutUint64(g.st.Z[i][j:], g.rnd.Uint64())
		}
	}
}

// target picks where the access goes: mostly inside the traced object,
// sometimes straddling its end or in the untraced buffer (the detour then
// runs the program's instruction).
func (g *gen) target(width int, align bool) uint64 {
	var base, size uint64
	switch g.rnd.IntN(10) {
	case 0:
		base, size = g.f.Untraced, g.f.UntracedSize
	case 1:
		if width > 1 && !align {
			return g.f.Traced + g.f.TracedSize - uint64(1+g.rnd.IntN(width-1)) // straddles the end
		}
		fallthrough
	default:
		base, size = g.f.Traced, g.f.TracedSize
	}
	off := uint64(g.rnd.IntN(int(size) - width + 1))
	if align && g.rnd.IntN(4) != 0 {
		off &^= uint64(width - 1)
	}
	return base + off
}

// mem is an encoded memory operand.
type mem = x86test.Mem

// mem encodes an operand addressing ea; avoid is a set of registers the
// instruction needs for itself (their values are set by the caller after).
func (g *gen) mem(ea uint64, avoid uint32) mem {
	m := mem{EA: ea}
	avoid |= 1 << rsp
	pick := func() int {
		for {
			r := g.rnd.IntN(16)
			if avoid&(1<<r) == 0 {
				avoid |= 1 << r
				return r
			}
		}
	}
	disp := func(mod byte) (int64, []byte) {
		switch mod {
		case 1:
			d := int64(int8(g.rnd.Uint32()))
			return d, []byte{byte(d)}
		case 2:
			d := int64(int32(g.rnd.Uint32())) >> g.rnd.IntN(32)
			return d, binary.LittleEndian.AppendUint32(nil, uint32(d))
		}
		return 0, nil
	}
	m.Addr32 = g.rnd.IntN(8) == 0
	garbage := func(v uint64) uint64 {
		if m.Addr32 {
			return v&0xFFFFFFFF | g.rnd.Uint64()<<32
		}
		return v
	}
	inTraced := ea >= g.f.Traced && ea < g.f.Traced+g.f.TracedSize
	form := g.rnd.IntN(8)
	if form == 7 && !inTraced {
		form = g.rnd.IntN(7)
	}
	switch form {
	case 0, 1, 2: // [base + disp]
		base := pick()
		mod := byte(form)
		if mod == 0 && base&7 == rbp {
			mod = 1
		}
		d, db := disp(mod)
		g.st.GPR[base] = garbage(ea - uint64(d))
		m.ModRM = mod<<6 | byte(base&7)
		if base&7 == rsp {
			m.Tail = append(m.Tail, 0x24)
		}
		m.Tail = append(m.Tail, db...)
		m.RexB = base >= 8
	case 3: // [base + index*scale + disp]
		base, index := pick(), pick()
		scale := byte(g.rnd.IntN(4))
		mod := byte(g.rnd.IntN(3))
		if mod == 0 && base&7 == rbp {
			mod = 1
		}
		d, db := disp(mod)
		iv := g.value()
		g.st.GPR[index] = iv
		g.st.GPR[base] = garbage(ea - iv<<scale - uint64(d))
		m.ModRM = mod<<6 | 4
		m.Tail = append(append(m.Tail, scale<<6|byte(index&7)<<3|byte(base&7)), db...)
		m.RexB, m.RexX = base >= 8, index >= 8
	case 4: // [index*scale + disp32]
		index := pick()
		scale := byte(g.rnd.IntN(4))
		iv := uint64(g.rnd.IntN(1 << 16))
		g.st.GPR[index] = garbage(iv)
		m.ModRM = 4
		m.Tail = binary.LittleEndian.AppendUint32(append(m.Tail, scale<<6|byte(index&7)<<3|5), uint32(ea-iv<<scale))
		m.RexX = index >= 8
	case 5: // [rip + disp32]
		m.ModRM, m.RIP, m.Addr32 = 5, true, false
		m.Tail = make([]byte, 4)
	case 6: // [disp32]
		m.ModRM = 4
		m.Tail = binary.LittleEndian.AppendUint32(append(m.Tail, 0x25), uint32(ea))
	case 7: // [rsp + disp]: the traced object sits right above the stack
		m.Addr32 = false
		g.st.GPR[rsp] = g.f.StackHi - 0x200 - uint64(g.rnd.IntN(0x100))*8
		d := int64(ea - g.st.GPR[rsp])
		m.ModRM = 0x84
		m.Tail = binary.LittleEndian.AppendUint32([]byte{0x24}, uint32(d))
	}
	return m
}

// enc is the encoder of the probed instruction, at the site.
func (g *gen) enc() x86test.Encoder { return x86test.Encoder{Rand: g.rnd, At: g.site()} }

// legacy, vex and evex encode an instruction around the operand m (see
// package x86test); legacy adds a REX prefix that says nothing one time in
// eight, vex and evex are unmasked.
func (g *gen) legacy(m mem, pre []byte, w bool, op []byte, reg int, imm []byte) []byte {
	return g.enc().Legacy(m, pre, w, g.rnd.IntN(8) == 0, op, reg, imm)
}

func (g *gen) vex(m mem, mmmmm, pp byte, w bool, L byte, op byte, reg int) []byte {
	return g.enc().VEX(m, mmmmm, pp, w, L, op, reg)
}

func (g *gen) evex(m mem, pp byte, w bool, LL byte, op byte, reg int) []byte {
	return g.enc().EVEX(m, pp, w, LL, false, 0, op, reg)
}

// imm is an immediate of n random bytes.
func (g *gen) imm(n int) []byte { return x86test.Imm(g.value(), n) }

// opsize picks 2, 4 or 8 bytes and the 66 prefix or REX.W it needs.
func (g *gen) opsize() (size int, pre []byte, w bool) { return x86test.OpSize(g.rnd) }

// sizeOrByte is opsize or, a quarter of the time, a byte operation.
func (g *gen) sizeOrByte() (size int, pre []byte, w, byteOp bool) {
	if g.rnd.IntN(4) == 0 {
		return 1, nil, g.rnd.IntN(4) == 0, true
	}
	size, pre, w = g.opsize()
	return size, pre, w, false
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// tmpl generates one instruction family: it returns the encoding and the
// access's width; the state is in g.st.
type tmpl struct {
	name string
	gen  func(g *gen) (code []byte, width int)
}

var immLen = x86test.ImmLen

// templates returns the instruction families.
func templates() []tmpl {
	reg := func(g *gen) int { return g.rnd.IntN(16) }
	var ts []tmpl
	add := func(name string, f func(g *gen) ([]byte, int)) { ts = append(ts, tmpl{name, f}) }
	add("mov store/load", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		r := reg(g)
		m := g.mem(g.target(size, false), 0)
		return g.legacy(m, pre, w, []byte{0x88 | b2u(!bop) | byte(g.rnd.IntN(2))*2}, r, nil), size
	})
	add("mov imm", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		m := g.mem(g.target(size, false), 0)
		n := immLen(size)
		if bop {
			n = 1
		}
		return g.legacy(m, pre, w, []byte{0xC6 | b2u(!bop)}, 0, g.imm(n)), size
	})
	add("mov moffs", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		ea := g.target(size, false)
		b := append([]byte(nil), pre...)
		if w {
			b = append(b, 0x48)
		}
		b = append(b, 0xA0|b2u(!bop)|byte(g.rnd.IntN(2))*2)
		return binary.LittleEndian.AppendUint64(b, ea), size
	})
	add("movzx/movsx", func(g *gen) ([]byte, int) {
		_, pre, w := g.opsize()
		op := []byte{0xB6, 0xB7, 0xBE, 0xBF}[g.rnd.IntN(4)]
		n := int(1 + op&1)
		m := g.mem(g.target(n, false), 0)
		return g.legacy(m, pre, w, []byte{0x0F, op}, reg(g), nil), n
	})
	add("movsxd", func(g *gen) ([]byte, int) {
		m := g.mem(g.target(4, false), 0)
		return g.legacy(m, nil, g.rnd.IntN(2) == 0, []byte{0x63}, reg(g), nil), 4
	})
	add("movnti", func(g *gen) ([]byte, int) {
		w := g.rnd.IntN(2) == 0
		n := 4 + 4*int(b2u(w))
		m := g.mem(g.target(n, false), 0)
		return g.legacy(m, nil, w, []byte{0x0F, 0xC3}, reg(g), nil), n
	})
	add("movbe", func(g *gen) ([]byte, int) {
		size, pre, w := g.opsize()
		m := g.mem(g.target(size, false), 0)
		return g.legacy(m, pre, w, []byte{0x0F, 0x38, 0xF0 | byte(g.rnd.IntN(2))}, reg(g), nil), size
	})
	for op := byte(0); op < 8; op++ {
		add("alu r/m", func(g *gen) ([]byte, int) {
			size, pre, w, bop := g.sizeOrByte()
			m := g.mem(g.target(size, false), 0)
			return g.legacy(m, pre, w, []byte{op<<3 | byte(g.rnd.IntN(2))*2 | b2u(!bop)}, reg(g), nil), size
		})
		add("alu imm", func(g *gen) ([]byte, int) {
			size, pre, w, bop := g.sizeOrByte()
			m := g.mem(g.target(size, false), 0)
			switch {
			case bop:
				return g.legacy(m, pre, w, []byte{0x80}, int(op), g.imm(1)), size
			case g.rnd.IntN(2) == 0:
				return g.legacy(m, pre, w, []byte{0x83}, int(op), g.imm(1)), size
			}
			return g.legacy(m, pre, w, []byte{0x81}, int(op), g.imm(immLen(size))), size
		})
	}
	add("test", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		m := g.mem(g.target(size, false), 0)
		if g.rnd.IntN(2) == 0 {
			return g.legacy(m, pre, w, []byte{0x84 | b2u(!bop)}, reg(g), nil), size
		}
		n := immLen(size)
		if bop {
			n = 1
		}
		return g.legacy(m, pre, w, []byte{0xF6 | b2u(!bop)}, 0, g.imm(n)), size
	})
	add("not/neg/inc/dec", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		m := g.mem(g.target(size, false), 0)
		if g.rnd.IntN(2) == 0 {
			return g.legacy(m, pre, w, []byte{0xF6 | b2u(!bop)}, 2+g.rnd.IntN(2), nil), size
		}
		return g.legacy(m, pre, w, []byte{0xFE | b2u(!bop)}, g.rnd.IntN(2), nil), size
	})
	add("shift", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		m := g.mem(g.target(size, false), 1<<rcx)
		digit := []int{0, 1, 4, 5, 7}[g.rnd.IntN(5)]
		count := func() uint64 {
			if g.rnd.IntN(6) == 0 {
				return uint64(g.rnd.IntN(256))
			}
			return uint64(g.rnd.IntN(size*8 + 2))
		}
		g.st.GPR[rcx] = g.st.GPR[rcx]&^0xFF | count()
		switch g.rnd.IntN(3) {
		case 0:
			return g.legacy(m, pre, w, []byte{0xC0 | b2u(!bop)}, digit, []byte{byte(count())}), size
		case 1:
			return g.legacy(m, pre, w, []byte{0xD0 | b2u(!bop)}, digit, nil), size
		}
		return g.legacy(m, pre, w, []byte{0xD2 | b2u(!bop)}, digit, nil), size
	})
	add("bt imm", func(g *gen) ([]byte, int) {
		size, pre, w := g.opsize()
		m := g.mem(g.target(size, false), 0)
		return g.legacy(m, pre, w, []byte{0x0F, 0xBA}, 4+g.rnd.IntN(4), g.imm(1)), size
	})
	add("bt reg", func(g *gen) ([]byte, int) {
		size, pre, w := g.opsize()
		r := reg(g)
		if r == rsp {
			r = rax
		}
		// A bit offset within ±128 bits of an operand well inside.
		bit := int64(g.rnd.IntN(256)) - 128
		ea := g.f.Traced + 0x800 + uint64(g.rnd.IntN(0x800))
		m := g.mem(ea, 1<<r)
		g.st.GPR[r] = g.st.GPR[r]&^sizeMaskOf(size) | uint64(bit)&sizeMaskOf(size)
		op := []byte{0xA3, 0xAB, 0xB3, 0xBB}[g.rnd.IntN(4)]
		return g.legacy(m, pre, w, []byte{0x0F, op}, r, nil), size
	})
	add("imul", func(g *gen) ([]byte, int) {
		size, pre, w := g.opsize()
		m := g.mem(g.target(size, false), 0)
		switch g.rnd.IntN(3) {
		case 0:
			return g.legacy(m, pre, w, []byte{0x0F, 0xAF}, reg(g), nil), size
		case 1:
			return g.legacy(m, pre, w, []byte{0x6B}, reg(g), g.imm(1)), size
		}
		return g.legacy(m, pre, w, []byte{0x69}, reg(g), g.imm(immLen(size))), size
	})
	add("cmovcc", func(g *gen) ([]byte, int) {
		size, pre, w := g.opsize()
		m := g.mem(g.target(size, false), 0)
		return g.legacy(m, pre, w, []byte{0x0F, 0x40 | byte(g.rnd.IntN(16))}, reg(g), nil), size
	})
	add("setcc", func(g *gen) ([]byte, int) {
		m := g.mem(g.target(1, false), 0)
		return g.legacy(m, nil, false, []byte{0x0F, 0x90 | byte(g.rnd.IntN(16))}, g.rnd.IntN(8), nil), 1
	})
	add("xchg", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		m := g.mem(g.target(size, false), 0)
		if g.rnd.IntN(2) == 0 {
			pre = append([]byte{0xF0}, pre...)
		}
		return g.legacy(m, pre, w, []byte{0x86 | b2u(!bop)}, reg(g), nil), size
	})
	add("xadd/cmpxchg", func(g *gen) ([]byte, int) {
		size, pre, w, bop := g.sizeOrByte()
		ea := g.target(size, false)
		m := g.mem(ea, 1<<rax)
		if g.rnd.IntN(2) == 0 {
			pre = append([]byte{0xF0}, pre...)
		}
		op := byte(0xC0)
		if g.rnd.IntN(2) == 0 {
			op = 0xB0
			if g.rnd.IntN(2) == 0 {
				// Make the comparison succeed.
				g.st.GPR[rax] = g.st.GPR[rax]&^sizeMaskOf(size) | g.f.peek(ea, size)
			}
		}
		return g.legacy(m, pre, w, []byte{0x0F, op | b2u(!bop)}, reg(g), nil), size
	})
	ts = append(ts, vecTemplates()...)
	return ts
}

func sizeMaskOf(size int) uint64 {
	if size == 8 {
		return ^uint64(0)
	}
	return 1<<(8*size) - 1
}

// vecTemplates covers the vector moves.
func vecTemplates() []tmpl {
	type sse struct {
		pre   byte
		op    []byte
		size  int
		align bool
		w     bool
	}
	legacy := map[string]sse{
		"movups":    {0, []byte{0x0F, 0x10}, 16, false, false},
		"movupd st": {0x66, []byte{0x0F, 0x11}, 16, false, false},
		"movss":     {0xF3, []byte{0x0F, 0x10}, 4, false, false},
		"movsd st":  {0xF2, []byte{0x0F, 0x11}, 8, false, false},
		"movaps":    {0, []byte{0x0F, 0x28}, 16, true, false},
		"movapd st": {0x66, []byte{0x0F, 0x29}, 16, true, false},
		"movd":      {0x66, []byte{0x0F, 0x6E}, 4, false, false},
		"movq st":   {0x66, []byte{0x0F, 0x7E}, 8, false, true},
		"movq F3":   {0xF3, []byte{0x0F, 0x7E}, 8, false, false},
		"movq D6":   {0x66, []byte{0x0F, 0xD6}, 8, false, false},
		"movdqa":    {0x66, []byte{0x0F, 0x6F}, 16, true, false},
		"movdqu st": {0xF3, []byte{0x0F, 0x7F}, 16, false, false},
		"movntdq":   {0x66, []byte{0x0F, 0xE7}, 16, true, false},
		"movntdqa":  {0x66, []byte{0x0F, 0x38, 0x2A}, 16, true, false},
		"movlps":    {0, []byte{0x0F, 0x12}, 8, false, false},
		"movhps st": {0, []byte{0x0F, 0x17}, 8, false, false},
		"movhpd":    {0x66, []byte{0x0F, 0x16}, 8, false, false},
	}
	var ts []tmpl
	for name, s := range legacy {
		ts = append(ts, tmpl{"sse " + name, func(g *gen) ([]byte, int) {
			m := g.mem(g.target(s.size, s.align), 0)
			var pre []byte
			if s.pre != 0 {
				pre = []byte{s.pre}
			}
			return g.legacy(m, pre, s.w, s.op, g.rnd.IntN(16), nil), s.size
		}})
	}
	type vex struct {
		mmmmm, pp, op byte
		size          int // 0: 16 << L
		align, w, l0  bool
	}
	vexes := map[string]vex{
		"vmovups":    {1, 0, 0x10, 0, false, false, false},
		"vmovupd st": {1, 1, 0x11, 0, false, false, false},
		"vmovss":     {1, 2, 0x10, 4, false, false, true},
		"vmovsd st":  {1, 3, 0x11, 8, false, false, true},
		"vmovaps":    {1, 0, 0x28, 0, true, false, false},
		"vmovd":      {1, 1, 0x6E, 4, false, false, true},
		"vmovq st":   {1, 1, 0x7E, 8, false, true, true},
		"vmovdqa st": {1, 1, 0x7F, 0, true, false, false},
		"vmovdqu":    {1, 2, 0x6F, 0, false, false, false},
		"vmovntdqa":  {2, 1, 0x2A, 0, true, false, false},
	}
	for name, s := range vexes {
		ts = append(ts, tmpl{name, func(g *gen) ([]byte, int) {
			L := byte(g.rnd.IntN(2))
			if s.l0 {
				L = 0
			}
			size := s.size
			if size == 0 {
				size = 16 << L
			}
			m := g.mem(g.target(size, s.align), 0)
			return g.vex(m, s.mmmmm, s.pp, s.w, L, s.op, g.rnd.IntN(16)), size
		}})
	}
	type evex struct {
		pp, op byte
		w      bool
		align  bool
	}
	evexes := map[string]evex{
		"vmovups zmm":      {0, 0x10, false, false},
		"vmovupd zmm st":   {1, 0x11, true, false},
		"vmovdqa64 zmm":    {1, 0x6F, true, true},
		"vmovdqu32 zmm st": {2, 0x7F, false, false},
		"vmovdqu8 zmm":     {3, 0x6F, false, false},
	}
	for name, s := range evexes {
		ts = append(ts, tmpl{name, func(g *gen) ([]byte, int) {
			LL := byte(g.rnd.IntN(3))
			size := 16 << LL
			m := g.mem(g.target(size, s.align), 0)
			if m.ModRM>>6 == 1 {
				// EVEX scales a disp8 by the vector length: use a disp32.
				m.ModRM = m.ModRM&0x3F | 0x80
				d := int8(m.Tail[len(m.Tail)-1])
				m.Tail = binary.LittleEndian.AppendUint32(m.Tail[:len(m.Tail)-1], uint32(int32(d)))
			}
			return g.evex(m, s.pp, s.w, LL, s.op, g.rnd.IntN(32)), size
		}})
	}
	return ts
}

// fillers are register-only instructions that follow the probed one, so
// that windows relocate them: with RIP-relative operands, conditional
// jumps to the exit (their rel8 is returned to be fixed), and flag
// effects. at is where they start, from the site.
func (g *gen) fillers(at int) (b []byte, jccs []int) {
	n := g.rnd.IntN(4)
	for i := 0; i < n; i++ {
		r1, r2 := g.rnd.IntN(16), g.rnd.IntN(16)
		if r1 == rsp {
			r1 = rbx
		}
		var ins []byte
		switch g.rnd.IntN(8) {
		case 0:
			ins = []byte{0x90}
		case 1:
			ins = []byte{0x40 | byte(r2>>3)<<2 | byte(r1>>3), 0x01, 0xC0 | byte(r2&7)<<3 | byte(r1&7)}
		case 2:
			ins = []byte{0xF5} // cmc
		case 3:
			ins = []byte{0x48 | byte(r1>>3), 0xFF, 0xC0 | byte(r1&7)}
		case 4:
			// lea r, [rip + x]: relocated RIP-relative, no access.
			ins = []byte{0x48 | byte(r1>>3)<<2, 0x8D, 0x05 | byte(r1&7)<<3, 0, 0, 0, 0}
			binary.LittleEndian.PutUint32(ins[3:], uint32(int32(0x1234-g.rnd.IntN(0x2468))))
		case 5:
			// mov r32, [rip + x] reading the untraced buffer.
			ins = []byte{0x40 | byte(r1>>3)<<2, 0x8B, 0x05 | byte(r1&7)<<3, 0, 0, 0, 0}
			next := g.site() + uint64(at+len(b)+len(ins))
			binary.LittleEndian.PutUint32(ins[3:], uint32(g.f.Untraced+uint64(g.rnd.IntN(256))*4-next))
		case 6:
			jccs = append(jccs, at+len(b)+1)
			ins = []byte{0x70 | byte(g.rnd.IntN(16)), 0}
		case 7:
			ins = []byte{0x0F, 0xAF, 0xC0 | byte(r1&7)<<3 | byte(r2&7)} // imul r32, r32
		}
		b = append(b, ins...)
	}
	return b, jccs
}

// kase generates a case of tm: the probed instruction, fillers, and an
// indirect jump to the fixture's exit.
func (g *gen) kase(tm tmpl) kase {
	insn, width := tm.gen(g)
	fill, jccs := g.fillers(len(insn))
	code := append(append([]byte(nil), insn...), fill...)
	exit := len(code)
	for _, j := range jccs {
		code[j] = byte(exit - (j + 1))
	}
	code = append(code, 0xFF, 0x25, 0, 0, 0, 0)
	code = binary.LittleEndian.AppendUint64(code, g.f.Exit)
	return kase{name: tm.name, code: code, insn: len(insn), width: width, st: g.st}
}

// pair generates a case of two probed instructions, a of tm1 then one of
// tm2, with fillers after. The second's register setup may undo the
// first's: the check compares only what both instructions then do.
func (g *gen) pair(tm1, tm2 tmpl) kase {
	i1, _ := tm1.gen(g)
	i2, _ := tm2.gen(g)
	{
		// A RIP-relative second operand was encoded for the site: move
		// its target by the first instruction's length.
		if in, err := x86.Decode(i2); err == nil {
			if off, n, ok := in.PCRel(); ok && n == 4 {
				d := int32(binary.LittleEndian.Uint32(i2[off:])) - int32(len(i1))
				binary.LittleEndian.PutUint32(i2[off:], uint32(d))
			}
		}
	}
	code := append(append([]byte(nil), i1...), i2...)
	fill, jccs := g.fillers(len(code))
	code = append(code, fill...)
	exit := len(code)
	for _, j := range jccs {
		code[j] = byte(exit - (j + 1))
	}
	code = append(code, 0xFF, 0x25, 0, 0, 0, 0)
	code = binary.LittleEndian.AppendUint64(code, g.f.Exit)
	return kase{name: tm1.name + " + " + tm2.name, code: code, insn: len(i1), lens: []int{len(i1), len(i2)}, st: g.st}
}

// peek reads size bytes of the traced object at ea as a little-endian
// value (0 outside).
func (f *fixture) peek(ea uint64, size int) uint64 {
	if ea < f.Traced || ea+uint64(size) > f.Traced+f.TracedSize {
		return 0
	}
	var b [8]byte
	copy(b[:], f.traced[ea-f.Traced:ea-f.Traced+uint64(size)])
	return binary.LittleEndian.Uint64(b[:])
}
