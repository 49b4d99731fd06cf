package x86

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// A tmpl generates random instances of one instruction family. gen returns
// the encoding after setting up g.st and g.mem; defined lists the status
// flags the instruction defines (the others are undefined and not compared).
type tmpl struct {
	name    string
	defined uint64
	gen     func(g *gen) []byte
}

const (
	allFlags   = arithFlags
	logicFlags = flagCF | flagOF | flagSF | flagZF | flagPF // AF undefined
)

// templates covers every emulated instruction family.
func templates() []tmpl {
	var ts []tmpl
	aluNames := []string{"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"}
	for op := byte(0); op < 8; op++ {
		def := uint64(allFlags)
		if op == aluOr || op == aluAnd || op == aluXor {
			def = logicFlags
		}
		ts = append(ts,
			tmpl{aluNames[op] + " Eb,Gb", def, func(g *gen) []byte {
				return g.aluRM(op, 0, op != aluCmp && g.rnd.IntN(2) == 0)
			}},
			tmpl{aluNames[op] + " Ev,Gv", def, func(g *gen) []byte {
				return g.aluRM(op, 1, op != aluCmp && g.rnd.IntN(2) == 0)
			}},
			tmpl{aluNames[op] + " Gb,Eb", def, func(g *gen) []byte { return g.aluRM(op, 2, false) }},
			tmpl{aluNames[op] + " Gv,Ev", def, func(g *gen) []byte { return g.aluRM(op, 3, false) }},
			tmpl{aluNames[op] + " E,imm", def, func(g *gen) []byte {
				return g.aluImm(op, op != aluCmp && g.rnd.IntN(2) == 0)
			}},
		)
	}
	ts = append(ts,
		tmpl{"test E,G", logicFlags, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			reg := uint8(g.rnd.IntN(16))
			m := g.memOp(g.offset(size, false), 0, 1)
			return g.legacy(m, pre, w, g.rnd.IntN(2) == 0, []byte{0x84 | b2u(!byteOp)}, reg, nil)
		}},
		tmpl{"test E,imm", logicFlags, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			n := immLen(size)
			if byteOp {
				n = 1
			}
			return g.legacy(m, pre, w, false, []byte{0xF6 | b2u(!byteOp)}, 0, g.imm(n))
		}},
		tmpl{"not/neg", allFlags, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			if g.rnd.IntN(2) == 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, false, []byte{0xF6 | b2u(!byteOp)}, uint8(2+g.rnd.IntN(2)), nil)
		}},
		tmpl{"inc/dec", allFlags, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			if g.rnd.IntN(2) == 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, false, []byte{0xFE | b2u(!byteOp)}, uint8(g.rnd.IntN(2)), nil)
		}},
		tmpl{"xchg", 0, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			if g.rnd.IntN(2) == 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, g.rnd.IntN(2) == 0, []byte{0x86 | b2u(!byteOp)}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"cmpxchg", allFlags, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			off := g.offset(size, false)
			m := g.memOp(off, 1, 1) // not rax
			if g.rnd.IntN(2) == 0 {
				// Make the comparison succeed.
				var b [8]byte
				copy(b[:], g.mem[off:off+size])
				g.st.GPR[0] = g.st.GPR[0]&^sizeMask(size) | binary.LittleEndian.Uint64(b[:])&sizeMask(size)
			}
			if g.rnd.IntN(3) != 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, g.rnd.IntN(2) == 0, []byte{0x0F, 0xB0 | b2u(!byteOp)}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"xadd", allFlags, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			if g.rnd.IntN(2) == 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, g.rnd.IntN(2) == 0, []byte{0x0F, 0xC0 | b2u(!byteOp)}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"bt* reg", flagCF, func(g *gen) []byte {
			size, pre, w := g.opsize()
			reg := uint8(g.rnd.IntN(16))
			// A bit offset within ±256 bits of an operand in the middle.
			bit := int64(g.rnd.IntN(512)) - 256
			g.st.GPR[reg] = g.st.GPR[reg]&^sizeMask(size) | uint64(bit)&sizeMask(size)
			off := nativeMemSize/2 - size + g.rnd.IntN(2*size)
			m := g.memOp(off, 1<<reg, 1)
			op := []byte{0xA3, 0xAB, 0xB3, 0xBB}[g.rnd.IntN(4)]
			if op != 0xA3 && g.rnd.IntN(2) == 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, false, []byte{0x0F, op}, reg, nil)
		}},
		tmpl{"bt* imm", flagCF, func(g *gen) []byte {
			size, pre, w := g.opsize()
			m := g.memOp(g.offset(size, false), 0, 1)
			digit := uint8(4 + g.rnd.IntN(4))
			if digit != 4 && g.rnd.IntN(2) == 0 {
				pre = append([]byte{0xF0}, pre...)
			}
			return g.legacy(m, pre, w, false, []byte{0x0F, 0xBA}, digit, g.imm(1))
		}},
		tmpl{"mov E,G / G,E", 0, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			op := 0x88 | b2u(!byteOp) | byte(g.rnd.IntN(2))*2
			return g.legacy(m, pre, w, g.rnd.IntN(2) == 0, []byte{op}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"mov E,imm", 0, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 0, 1)
			n := immLen(size)
			if byteOp {
				n = 1
			}
			return g.legacy(m, pre, w, false, []byte{0xC6 | b2u(!byteOp)}, 0, g.imm(n))
		}},
		tmpl{"mov moffs", 0, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			target := g.n.mem + uint64(g.offset(size, false))
			var b []byte
			switch g.rnd.IntN(4) {
			case 0:
				b = append(b, 0x65) // GS
				target -= g.n.gsBase
			case 1:
				b = append(b, 0x67) // 32-bit offset
			}
			b = append(b, pre...)
			if w {
				b = append(b, 0x48)
			}
			b = append(b, 0xA0|b2u(!byteOp)|byte(g.rnd.IntN(2))*2)
			if len(b) > 0 && b[0] == 0x67 {
				return binary.LittleEndian.AppendUint32(b, uint32(target))
			}
			return binary.LittleEndian.AppendUint64(b, target)
		}},
		tmpl{"movzx/movsx", 0, func(g *gen) []byte {
			size, pre, w := g.opsize()
			op := []byte{0xB6, 0xB7, 0xBE, 0xBF}[g.rnd.IntN(4)]
			m := g.memOp(g.offset(int(1+op&1), false), 0, 1)
			_ = size
			return g.legacy(m, pre, w, false, []byte{0x0F, op}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"movsxd", 0, func(g *gen) []byte {
			m := g.memOp(g.offset(4, false), 0, 1)
			return g.legacy(m, nil, g.rnd.IntN(2) == 0, false, []byte{0x63}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"movnti", 0, func(g *gen) []byte {
			w := g.rnd.IntN(2) == 0
			m := g.memOp(g.offset(8, false), 0, 1)
			return g.legacy(m, nil, w, false, []byte{0x0F, 0xC3}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"movbe", 0, func(g *gen) []byte {
			size, pre, w := g.opsize()
			m := g.memOp(g.offset(size, false), 0, 1)
			return g.legacy(m, pre, w, false, []byte{0x0F, 0x38, 0xF0 | byte(g.rnd.IntN(2))}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"movs/stos/lods", 0, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			count := g.rnd.IntN(6)
			span := (count + 1) * size
			// RSI and RDI point so that every element stays in the buffer
			// whichever way DF runs.
			for _, r := range []int{6, 7} {
				g.st.GPR[r] = g.n.mem + uint64(span+g.rnd.IntN(nativeMemSize-2*span-8))
			}
			var b []byte
			if g.rnd.IntN(4) == 0 {
				b = append(b, 0x65) // GS applies to the source of movs and lods
				g.st.GPR[6] -= g.n.gsBase
			}
			rep := g.rnd.IntN(3) != 0
			if rep {
				b = append(b, []byte{0xF3, 0xF2}[g.rnd.IntN(2)])
				g.st.GPR[1] = uint64(count)
			}
			b = append(b, pre...)
			if w {
				b = append(b, 0x48)
			}
			op := []byte{0xA4, 0xAA, 0xAC}[g.rnd.IntN(3)]
			if op == 0xAC && rep && b[len(b)-1] == 0xF2 {
				b[len(b)-1] = 0xF3
			}
			return append(b, op|b2u(!byteOp))
		}},
	)
	ts = append(ts,
		tmpl{"rol/ror/shl/shr/sar", shiftDefined, func(g *gen) []byte {
			size, pre, w, byteOp := g.sizeOrByte()
			m := g.memOp(g.offset(size, false), 1<<1, 1) // rcx holds the count
			digit := []uint8{0, 1, 4, 5, 7}[g.rnd.IntN(5)]
			// Mostly counts below the width, sometimes above, or masked.
			count := func() uint64 {
				if g.rnd.IntN(8) == 0 {
					return uint64(g.rnd.IntN(256))
				}
				return uint64(g.rnd.IntN(size*8 + 2))
			}
			g.st.GPR[1] = g.st.GPR[1]&^0xFF | count()
			switch g.rnd.IntN(3) {
			case 0:
				return g.legacy(m, pre, w, false, []byte{0xC0 | b2u(!byteOp)}, digit, []byte{byte(count())})
			case 1:
				return g.legacy(m, pre, w, false, []byte{0xD0 | b2u(!byteOp)}, digit, nil)
			}
			return g.legacy(m, pre, w, false, []byte{0xD2 | b2u(!byteOp)}, digit, nil)
		}},
		tmpl{"setcc", 0, func(g *gen) []byte {
			m := g.memOp(g.offset(1, false), 0, 1)
			return g.legacy(m, nil, false, false, []byte{0x0F, 0x90 | byte(g.rnd.IntN(16))}, uint8(g.rnd.IntN(8)), nil)
		}},
		tmpl{"cmovcc", 0, func(g *gen) []byte {
			size, pre, w := g.opsize()
			m := g.memOp(g.offset(size, false), 0, 1)
			return g.legacy(m, pre, w, false, []byte{0x0F, 0x40 | byte(g.rnd.IntN(16))}, uint8(g.rnd.IntN(16)), nil)
		}},
		tmpl{"imul", flagCF | flagOF, func(g *gen) []byte {
			size, pre, w := g.opsize()
			m := g.memOp(g.offset(size, false), 0, 1)
			reg := uint8(g.rnd.IntN(16))
			switch g.rnd.IntN(3) {
			case 0:
				return g.legacy(m, pre, w, false, []byte{0x0F, 0xAF}, reg, nil)
			case 1:
				return g.legacy(m, pre, w, false, []byte{0x6B}, reg, g.imm(1))
			}
			return g.legacy(m, pre, w, false, []byte{0x69}, reg, g.imm(immLen(size)))
		}},
		tmpl{"movlps/movhps/movlpd/movhpd", 0, func(g *gen) []byte {
			m := g.memOp(g.offset(8, false), 0, 1)
			var pre []byte
			if g.rnd.IntN(2) == 0 {
				pre = []byte{0x66}
			}
			op := []byte{0x12, 0x13, 0x16, 0x17}[g.rnd.IntN(4)]
			return g.legacy(m, pre, false, false, []byte{0x0F, op}, uint8(g.rnd.IntN(16)), nil)
		}},
	)
	ts = append(ts, vectorTemplates()...)
	return ts
}

// vectorTemplates covers the SSE, AVX and AVX-512 moves.
func vectorTemplates() []tmpl {
	type sse struct {
		name  string
		pre   byte // mandatory prefix or 0
		op    []byte
		size  int
		align bool
		w     bool
	}
	legacy := []sse{
		{"movups load", 0, []byte{0x0F, 0x10}, 16, false, false},
		{"movups store", 0, []byte{0x0F, 0x11}, 16, false, false},
		{"movupd load", 0x66, []byte{0x0F, 0x10}, 16, false, false},
		{"movupd store", 0x66, []byte{0x0F, 0x11}, 16, false, false},
		{"movss load", 0xF3, []byte{0x0F, 0x10}, 4, false, false},
		{"movss store", 0xF3, []byte{0x0F, 0x11}, 4, false, false},
		{"movsd load", 0xF2, []byte{0x0F, 0x10}, 8, false, false},
		{"movsd store", 0xF2, []byte{0x0F, 0x11}, 8, false, false},
		{"movaps load", 0, []byte{0x0F, 0x28}, 16, true, false},
		{"movaps store", 0, []byte{0x0F, 0x29}, 16, true, false},
		{"movapd load", 0x66, []byte{0x0F, 0x28}, 16, true, false},
		{"movapd store", 0x66, []byte{0x0F, 0x29}, 16, true, false},
		{"movntps", 0, []byte{0x0F, 0x2B}, 16, true, false},
		{"movntpd", 0x66, []byte{0x0F, 0x2B}, 16, true, false},
		{"movd load", 0x66, []byte{0x0F, 0x6E}, 4, false, false},
		{"movq load (6E)", 0x66, []byte{0x0F, 0x6E}, 8, false, true},
		{"movd store", 0x66, []byte{0x0F, 0x7E}, 4, false, false},
		{"movq store (7E)", 0x66, []byte{0x0F, 0x7E}, 8, false, true},
		{"movq load (F3 7E)", 0xF3, []byte{0x0F, 0x7E}, 8, false, false},
		{"movq store (D6)", 0x66, []byte{0x0F, 0xD6}, 8, false, false},
		{"movdqa load", 0x66, []byte{0x0F, 0x6F}, 16, true, false},
		{"movdqa store", 0x66, []byte{0x0F, 0x7F}, 16, true, false},
		{"movdqu load", 0xF3, []byte{0x0F, 0x6F}, 16, false, false},
		{"movdqu store", 0xF3, []byte{0x0F, 0x7F}, 16, false, false},
		{"movntdq", 0x66, []byte{0x0F, 0xE7}, 16, true, false},
		{"movntdqa", 0x66, []byte{0x0F, 0x38, 0x2A}, 16, true, false},
	}
	var ts []tmpl
	for _, s := range legacy {
		ts = append(ts, tmpl{s.name, 0, func(g *gen) []byte {
			m := g.memOp(g.offset(s.size, s.align), 0, 1)
			var pre []byte
			if s.pre != 0 {
				pre = []byte{s.pre}
			}
			return g.legacy(m, pre, s.w, false, s.op, uint8(g.rnd.IntN(16)), nil)
		}})
	}
	type vex struct {
		name   string
		mmmmm  byte
		pp     byte
		op     byte
		size   int // 0: 16 << L
		align  bool
		w      bool
		fixedL bool // L must be 0
	}
	vexes := []vex{
		{"vmovups load", 1, 0, 0x10, 0, false, false, false},
		{"vmovups store", 1, 0, 0x11, 0, false, false, false},
		{"vmovupd load", 1, 1, 0x10, 0, false, false, false},
		{"vmovupd store", 1, 1, 0x11, 0, false, false, false},
		{"vmovss load", 1, 2, 0x10, 4, false, false, true},
		{"vmovss store", 1, 2, 0x11, 4, false, false, true},
		{"vmovsd load", 1, 3, 0x10, 8, false, false, true},
		{"vmovsd store", 1, 3, 0x11, 8, false, false, true},
		{"vmovaps load", 1, 0, 0x28, 0, true, false, false},
		{"vmovaps store", 1, 0, 0x29, 0, true, false, false},
		{"vmovapd load", 1, 1, 0x28, 0, true, false, false},
		{"vmovapd store", 1, 1, 0x29, 0, true, false, false},
		{"vmovntps", 1, 0, 0x2B, 0, true, false, false},
		{"vmovd load", 1, 1, 0x6E, 4, false, false, true},
		{"vmovq load (6E)", 1, 1, 0x6E, 8, false, true, true},
		{"vmovd store", 1, 1, 0x7E, 4, false, false, true},
		{"vmovq store (7E)", 1, 1, 0x7E, 8, false, true, true},
		{"vmovq load (F3 7E)", 1, 2, 0x7E, 8, false, false, true},
		{"vmovq store (D6)", 1, 1, 0xD6, 8, false, false, true},
		{"vmovdqa load", 1, 1, 0x6F, 0, true, false, false},
		{"vmovdqa store", 1, 1, 0x7F, 0, true, false, false},
		{"vmovdqu load", 1, 2, 0x6F, 0, false, false, false},
		{"vmovdqu store", 1, 2, 0x7F, 0, false, false, false},
		{"vmovntdq", 1, 1, 0xE7, 0, true, false, false},
		{"vmovntdqa", 2, 1, 0x2A, 0, true, false, false},
	}
	for _, s := range vexes {
		ts = append(ts, tmpl{s.name, 0, func(g *gen) []byte {
			L := byte(g.rnd.IntN(2))
			if s.fixedL {
				L = 0
			}
			size := s.size
			if size == 0 {
				size = 16 << L
			}
			m := g.memOp(g.offset(size, s.align), 0, 1)
			return g.vex(m, s.mmmmm, s.pp, s.w, L, s.op, uint8(g.rnd.IntN(16)))
		}})
	}
	type evex struct {
		name  string
		pp    byte
		op    byte
		w     bool
		align bool
	}
	evexes := []evex{
		{"vmovups", 0, 0x10, false, false},
		{"vmovupd", 1, 0x10, true, false},
		{"vmovaps", 0, 0x28, false, true},
		{"vmovapd", 1, 0x28, true, true},
		{"vmovdqa32", 1, 0x6F, false, true},
		{"vmovdqa64", 1, 0x6F, true, true},
		{"vmovdqu32", 2, 0x6F, false, false},
		{"vmovdqu64", 2, 0x6F, true, false},
		{"vmovdqu8", 3, 0x6F, false, false},
		{"vmovdqu16", 3, 0x6F, true, false},
	}
	for _, s := range evexes {
		for _, store := range []bool{false, true} {
			name := "evex " + s.name + " load"
			if store {
				name = "evex " + s.name + " store"
			}
			ts = append(ts, tmpl{name, 0, func(g *gen) []byte {
				LL := byte(g.rnd.IntN(3))
				size := 16 << LL
				m := g.memOp(g.offset(size, s.align), 0, size)
				var aaa byte
				if g.rnd.IntN(4) != 0 {
					aaa = byte(g.rnd.IntN(8))
				}
				// Sometimes all-ones or all-zero masks.
				switch g.rnd.IntN(6) {
				case 0:
					g.st.K[aaa] = ^uint64(0)
				case 1:
					g.st.K[aaa] = 0
				}
				z := !store && aaa != 0 && g.rnd.IntN(2) == 0
				op := s.op
				if store {
					op = map[byte]byte{0x10: 0x11, 0x28: 0x29, 0x6F: 0x7F}[op]
				}
				return g.evex(m, s.pp, s.w, LL, z, aaa, op, uint8(g.rnd.IntN(32)))
			}})
		}
	}
	return ts
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// sizeOrByte picks a byte operation (a quarter of the time) or 2, 4, 8.
func (g *gen) sizeOrByte() (size int, pre []byte, w, byteOp bool) {
	if g.rnd.IntN(4) == 0 {
		return 1, nil, g.rnd.IntN(4) == 0, true // REX.W is ignored for byte ops
	}
	size, pre, w = g.opsize()
	return size, pre, w, false
}

// aluRM encodes ALU op with a register operand; form is the low two bits of
// the opcode.
func (g *gen) aluRM(op, form byte, lock bool) []byte {
	size, pre, w := g.opsize()
	if form&1 == 0 {
		size, pre, w = 1, nil, g.rnd.IntN(4) == 0
	}
	m := g.memOp(g.offset(size, false), 0, 1)
	if lock {
		pre = append([]byte{0xF0}, pre...)
	}
	return g.legacy(m, pre, w, g.rnd.IntN(2) == 0, []byte{op<<3 | form}, uint8(g.rnd.IntN(16)), nil)
}

// aluImm encodes group 1 (80, 81, 83) with a memory destination.
func (g *gen) aluImm(op byte, lock bool) []byte {
	size, pre, w, byteOp := g.sizeOrByte()
	m := g.memOp(g.offset(size, false), 0, 1)
	if lock {
		pre = append([]byte{0xF0}, pre...)
	}
	switch {
	case byteOp:
		return g.legacy(m, pre, w, false, []byte{0x80}, op, g.imm(1))
	case g.rnd.IntN(2) == 0:
		return g.legacy(m, pre, w, false, []byte{0x83}, op, g.imm(1))
	}
	return g.legacy(m, pre, w, false, []byte{0x81}, op, g.imm(immLen(size)))
}

// TestDifferential runs random instances of every emulated instruction on
// the CPU and in Emulate and requires identical registers, defined flags,
// vector registers and memory.
func TestDifferential(t *testing.T) {
	n := startNative(t)
	iters := 300
	if testing.Short() {
		iters = 40
	}
	total := 0
	for ti, tm := range templates() {
		t.Run(tm.name, func(t *testing.T) {
			g := &gen{rnd: rand.New(rand.NewPCG(uint64(ti), 1)), n: n}
			fails := 0
			for i := 0; i < iters && fails < 3; i++ {
				if err := g.check(tm); err != nil {
					t.Error(err)
					fails++
				}
				total++
			}
			// Only misaligned aligned moves may fault, about a quarter of
			// the time; more means the generator is broken.
			if g.faults > iters/2 {
				t.Errorf("%d of %d cases not compared (faulted)", g.faults, iters)
			}
		})
	}
	t.Logf("%d differential cases", total)
}

// check runs one random instance of tm.
func (g *gen) check(tm tmpl) error {
	g.reset()
	code := tm.gen(g)
	return g.compare(code, tm.defined)
}

// compare runs code on g.st and g.mem in Emulate and on the CPU and reports
// any difference (only the status flags in defined are compared).
func (g *gen) compare(code []byte, defined uint64) error {
	in, err := Decode(code)
	if err != nil {
		return fmt.Errorf("% x: decode: %v", code, err)
	}
	if in.Len != len(code) {
		return fmt.Errorf("% x (%s): Len %d, want %d", code, in, in.Len, len(code))
	}
	if !in.Emulable() {
		return fmt.Errorf("% x (%s): not emulable", code, in)
	}
	r, v := g.st.toRegs(g.n.code, g.n.fsBase, g.n.gsBase)
	r0 := r
	m := &sliceMem{base: g.n.mem, b: bytes.Clone(g.mem[:])}
	emuErr := Emulate(in, &r, &v, m)

	st := g.st
	mem := g.mem
	sig, err := g.n.run(code, &st, mem[:])
	if err != nil {
		return fmt.Errorf("native executor: %v", err)
	}
	switch {
	case sig != 0 && emuErr == nil:
		return fmt.Errorf("% x (%s): CPU raised signal %d, emulator succeeded", code, in, sig)
	case sig != 0:
		if !errors.Is(emuErr, ErrUnsupported) {
			return fmt.Errorf("% x (%s): CPU raised signal %d, emulator: %v (want ErrUnsupported)", code, in, sig, emuErr)
		}
		g.faults++
		return nil
	case errors.Is(emuErr, ErrUnsupported) && in.p.kind == kShift:
		// Zero counts and counts past a byte or word are left to the CPU.
		if c := shiftCount(&in.p, &r0); c != 0 && (in.p.op < 4 || c < int(in.p.size)*8) {
			return fmt.Errorf("% x (%s): count %d, emulator: %v", code, in, c, emuErr)
		}
		g.faults++
		return nil
	case errors.Is(emuErr, ErrUnsupported) && in.p.align:
		// A misaligned aligned move is left to the CPU, which (on AMD, for
		// masked EVEX forms) may not fault after all.
		if a, n, _, _, _ := in.MemOperand(&r); a%uint64(n) == 0 {
			return fmt.Errorf("% x (%s): aligned operand at %#x, emulator: %v", code, in, a, emuErr)
		}
		g.faults++
		return nil
	case emuErr != nil:
		return fmt.Errorf("% x (%s): emulator: %v", code, in, emuErr)
	}
	var diffs []string
	for i := range st.GPR {
		if got := *gpr(&r, uint8(i)); got != st.GPR[i] {
			diffs = append(diffs, fmt.Sprintf("r%d = %#x, CPU %#x (before %#x)", i, got, st.GPR[i], g.st.GPR[i]))
		}
	}
	if want := g.n.code + uint64(len(code)); r.Rip != want {
		diffs = append(diffs, fmt.Sprintf("rip = %#x, want %#x", r.Rip, want))
	}
	if defined == shiftDefined {
		defined = shiftFlags(in, &r0)
	}
	mask := ^uint64(arithFlags &^ defined)
	if r.Eflags&mask != st.RFlags&mask {
		diffs = append(diffs, fmt.Sprintf("rflags = %#x, CPU %#x (before %#x, compared %#x)", r.Eflags, st.RFlags, g.st.RFlags, mask))
	}
	for i := range st.Z {
		if v.Z[i] != st.Z[i] {
			diffs = append(diffs, fmt.Sprintf("zmm%d = %x\n    CPU %x\n before %x", i, v.Z[i], st.Z[i], g.st.Z[i]))
		}
	}
	if v.K != st.K {
		diffs = append(diffs, "opmask registers differ")
	}
	if !bytes.Equal(m.b, mem[:]) {
		for i := range mem {
			if m.b[i] != mem[i] {
				diffs = append(diffs, fmt.Sprintf("memory differs from offset %#x: % x, CPU % x (before % x)", i, m.b[i:min(i+16, len(mem))], mem[i:min(i+16, len(mem))], g.mem[i:min(i+16, len(mem))]))
				break
			}
		}
	}
	if diffs != nil {
		return fmt.Errorf("% x (%s):\n  %s", code, in, joinLines(diffs))
	}
	return nil
}

func joinLines(s []string) string {
	var b bytes.Buffer
	for i, l := range s {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(l)
	}
	return b.String()
}

// shiftDefined marks a template whose defined flags depend on the count.
const shiftDefined = 1 << 63

// shiftFlags returns the flags a shift or rotate defines for its count: OF
// only for a count of 1, AF never for shifts; rotates leave SF, ZF, AF and
// PF alone, so those must match too.
func shiftFlags(in *Inst, r *Regs) uint64 {
	c := shiftCount(&in.p, r)
	var fl uint64 = arithFlags
	if in.p.op >= 4 {
		fl &^= flagAF
	}
	if c != 1 {
		fl &^= flagOF
	}
	return fl
}
