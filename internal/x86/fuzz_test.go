package x86

import (
	"errors"
	"math/rand/v2"
	"testing"
)

var fuzzSeeds = [][]byte{
	{0x8B, 0x47, 0x08},
	{0xF0, 0x48, 0x0F, 0xB1, 0x0F},
	{0x66, 0x41, 0x81, 0x44, 0x8D, 0x10, 0x34, 0x12},
	{0x64, 0x88, 0x24, 0x25, 0x10, 0, 0, 0},
	{0xF3, 0x48, 0xA5},
	{0x62, 0xE1, 0x7F, 0x4A, 0x7F, 0x47, 0x01},
	{0x65, 0x67, 0xC5, 0xFE, 0x6F, 0x07},
	{0x0F, 0xBA, 0x6F, 0x04, 0x21},
	{0x40, 0x86, 0x37},
	{0x8A, 0x27},
	{0x0F, 0x38, 0xF1, 0x07},
	{0x66, 0x48, 0x0F, 0x7E, 0x07},
}

// FuzzDecode checks that Decode never panics, that lengths are sane and
// stable, and that the other methods cope with whatever it accepts.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		in, err := Decode(code)
		if err != nil {
			return
		}
		if in.Len < 1 || in.Len > MaxLen || in.Len > len(code) {
			t.Fatalf("% x: Len %d", code, in.Len)
		}
		_ = in.String()
		var r Regs
		in.MemOperand(&r)
		again, err := Decode(code[:in.Len])
		if err != nil || again.Len != in.Len || again.Emulable() != in.Emulable() || again.p != in.p {
			t.Fatalf("% x: decoding the first Len bytes again differs (%v)", code, err)
		}
		if in.NeedsVec() && !in.Emulable() {
			t.Fatalf("% x: NeedsVec but not Emulable", code)
		}
	})
}

// FuzzEmulate decodes random bytes and, for emulated instructions, points
// the memory operand into the native executor's buffer and compares
// Emulate with the CPU. When the operand cannot be placed it still checks
// that Emulate does not panic and keeps its error contract.
func FuzzEmulate(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, code []byte, seed uint64) {
		in, err := Decode(code)
		if err != nil {
			return
		}
		code = code[:in.Len]
		n := startNative(t)
		g := &gen{rnd: rand.New(rand.NewPCG(seed, 2)), n: n}
		g.reset()
		if !in.Emulable() {
			r, v := g.st.toRegs(n.code, n.fsBase, n.gsBase)
			r0 := r
			if err := Emulate(in, &r, &v, &sliceMem{base: n.mem, b: g.mem[:]}); !errors.Is(err, ErrUnsupported) || r != r0 {
				t.Fatalf("% x: not emulable, but Emulate = %v", code, err)
			}
			return
		}
		if g.place(in) {
			if err := g.compare(code, definedFlags(in)); err != nil {
				t.Fatal(err)
			}
			return
		}
		r, v := g.st.toRegs(n.code, n.fsBase, n.gsBase)
		r0 := r
		err = Emulate(in, &r, &v, &sliceMem{base: n.mem, b: g.mem[:]})
		switch {
		case err == nil && r.Rip != r0.Rip+uint64(in.Len):
			t.Fatalf("% x: success but RIP %#x", code, r.Rip)
		case err != nil && r.Rip != r0.Rip:
			t.Fatalf("% x: error %v but RIP moved", code, err)
		case err != nil && r != r0 && in.p.kind != kMovs && in.p.kind != kStos && in.p.kind != kLods:
			t.Fatalf("% x: error %v but registers changed", code, err)
		}
	})
}

// definedFlags returns the status flags an emulated instruction defines.
func definedFlags(in *Inst) uint64 {
	p := &in.p
	switch {
	case p.kind == kBT:
		return flagCF
	case p.kind == kImul:
		return flagCF | flagOF
	case p.kind == kShift:
		return shiftDefined
	case (p.kind == kALUStore || p.kind == kALULoad) && (p.op == aluAnd || p.op == aluOr || p.op == aluXor || p.op == aluTest):
		return logicFlags
	}
	return allFlags
}

// place sets registers so that in's memory operand (or string operands)
// fall inside the native buffer, and reports whether it managed to.
func (g *gen) place(in *Inst) bool {
	p := &in.p
	size := int(p.msize)
	switch p.kind {
	case kMovs, kStos, kLods:
		g.st.GPR[1] = uint64(g.rnd.IntN(8))
		span := 9 * size
		for _, r := range []int{6, 7} {
			g.st.GPR[r] = g.n.mem + uint64(span+g.rnd.IntN(nativeMemSize-2*span))
		}
		g.st.GPR[6] -= g.segBase(p.mem.seg)
		return true
	}
	m := p.mem
	if m.base < 0 || m.base == m.index || (m.addr32 && m.seg == segFS) {
		return g.inBuffer(in)
	}
	if p.kind == kBT && !p.immOK {
		if p.reg == uint8(m.base) || int8(p.reg) == m.index {
			return false
		}
		bit := int64(g.rnd.IntN(512)) - 256
		g.st.GPR[p.reg] = uint64(bit)
	}
	target := g.n.mem + uint64(g.offset(size, true))
	if p.kind == kBT {
		target = g.n.mem + nativeMemSize/2
	}
	g.st.GPR[m.base] = 0
	r, _ := g.st.toRegs(g.n.code, g.n.fsBase, g.n.gsBase)
	a0 := m.ea(&r, r.Rip+uint64(in.Len))
	g.st.GPR[m.base] = target - a0
	return g.inBuffer(in)
}

func (g *gen) segBase(seg uint8) uint64 {
	switch seg {
	case segFS:
		return g.n.fsBase
	case segGS:
		return g.n.gsBase
	}
	return 0
}

// inBuffer reports whether in's memory operand lies in the native buffer.
func (g *gen) inBuffer(in *Inst) bool {
	r, _ := g.st.toRegs(g.n.code, g.n.fsBase, g.n.gsBase)
	a, n, _, _, ok := in.MemOperand(&r)
	return ok && a >= g.n.mem && a-g.n.mem <= uint64(nativeMemSize-n)
}

// TestMutations flips random bits in encodings of every template and, for
// each mutant that still decodes as emulated, compares Emulate with the CPU.
// It finds encodings the decoder accepts but the CPU reads differently,
// without needing a -fuzz run.
func TestMutations(t *testing.T) {
	n := startNative(t)
	rnd := rand.New(rand.NewPCG(42, 42))
	compared := 0
	for _, tm := range templates() {
		g := &gen{rnd: rnd, n: n}
		for i := 0; i < 60; i++ {
			g.reset()
			code := tm.gen(g)
			for j := 0; j < 1+rnd.IntN(2); j++ {
				code[rnd.IntN(len(code))] ^= 1 << rnd.IntN(8)
			}
			in, err := Decode(code)
			if err != nil || !in.Emulable() {
				continue
			}
			code = code[:in.Len]
			g.reset()
			if !g.place(in) {
				continue
			}
			if err := g.compare(code, definedFlags(in)); err != nil {
				t.Errorf("mutant of %s: %v", tm.name, err)
			}
			compared++
		}
	}
	if compared < 1000 {
		t.Errorf("only %d mutants compared", compared)
	}
	t.Logf("%d mutants compared with the CPU", compared)
}
