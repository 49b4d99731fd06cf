package x86

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestLayout checks, on random instances of every emulated instruction
// family, that Layout points at the fields Form describes: the ModRM byte
// encodes the register and the memory form, the displacement bytes hold
// Disp (times the EVEX disp8 scale), and the immediate bytes hold Imm.
func TestLayout(t *testing.T) {
	n := &native{code: 0x40000800, mem: 0x40001000, fsBase: 0x7f0000000000, gsBase: 0x40000000}
	for ti, tm := range templates() {
		g := &gen{rnd: rand.New(rand.NewPCG(uint64(ti), 7)), n: n}
		for i := 0; i < 50; i++ {
			g.reset()
			code := tm.gen(g)
			in, err := Decode(code)
			if err != nil || !in.Emulable() {
				t.Fatalf("%s: % x: not emulable (%v)", tm.name, code, err)
			}
			f, _ := in.Form()
			l, ok := in.Layout()
			if !ok {
				t.Fatalf("%s: no layout", tm.name)
			}
			b := in.Bytes()
			if len(b) != len(code) {
				t.Fatalf("%s: Bytes has %d bytes, want %d", tm.name, len(b), len(code))
			}
			if (l.REX >= 0) != (l.REX >= 0 && b[l.REX]&0xF0 == 0x40) {
				t.Errorf("%s: % x: REX at %d", tm.name, code, l.REX)
			}
			if l.VEX >= 0 && b[l.VEX] != 0xC4 && b[l.VEX] != 0xC5 && b[l.VEX] != 0x62 {
				t.Errorf("%s: % x: VEX at %d is %#x", tm.name, code, l.VEX, b[l.VEX])
			}
			if l.Opcode < 0 || l.Opcode >= len(b) {
				t.Errorf("%s: % x: opcode at %d", tm.name, code, l.Opcode)
				continue
			}
			str := f.Kind == KindMovs || f.Kind == KindStos || f.Kind == KindLods
			moffs := !str && l.ModRM < 0
			switch {
			case str:
				if l.ModRM >= 0 || l.Disp >= 0 {
					t.Errorf("%s: % x: string instruction with ModRM %d disp %d", tm.name, code, l.ModRM, l.Disp)
				}
				continue
			case moffs:
				if b[l.Opcode]&0xFC != 0xA0 || l.Disp != l.Opcode+1 || l.Disp+l.DispLen != len(b) {
					t.Errorf("%s: % x: moffs layout %+v", tm.name, code, l)
				}
				continue
			}
			m := b[l.ModRM]
			if m>>6 == 3 {
				t.Errorf("%s: % x: ModRM %#x at %d is a register form", tm.name, code, m, l.ModRM)
			}
			if f.Kind != KindVecLoad && f.Kind != KindVecStore && f.Reg&7 != m>>3&7 && !f.High && f.Kind != KindALUStore && f.Kind != KindUnary && f.Kind != KindShift && f.Kind != KindSetcc && f.Kind != KindMovStoreImm && !(f.Kind == KindBT && f.HasImm) {
				t.Errorf("%s: % x: ModRM reg %d, Form.Reg %d", tm.name, code, m>>3&7, f.Reg)
			}
			var disp int64
			switch l.DispLen {
			case 1:
				disp = int64(int8(b[l.Disp]))
				if l.VEX >= 0 && b[l.VEX] == 0x62 {
					disp *= int64(f.MemSize)
				}
			case 4:
				disp = int64(int32(binary.LittleEndian.Uint32(b[l.Disp:])))
			}
			if disp != f.Disp {
				t.Errorf("%s: % x: displacement at %d+%d is %#x, Form.Disp %#x", tm.name, code, l.Disp, l.DispLen, disp, f.Disp)
			}
			if end := l.Disp + l.DispLen; l.Disp >= 0 && l.Imm < 0 && end != len(b) || l.Imm >= 0 && l.Imm+l.ImmLen != len(b) {
				t.Errorf("%s: % x: fields do not end the encoding: %+v", tm.name, code, l)
			}
			if l.Imm >= 0 && f.HasImm {
				var v uint64
				for k := l.ImmLen - 1; k >= 0; k-- {
					v = v<<8 | uint64(b[l.Imm+k])
				}
				v = signExtend(v, l.ImmLen)
				if f.Kind == KindShift || f.Kind == KindBT {
					v &= 0xFF
				}
				if v != f.Imm {
					t.Errorf("%s: % x: immediate %#x, Form.Imm %#x", tm.name, code, v, f.Imm)
				}
			}
		}
	}
}
