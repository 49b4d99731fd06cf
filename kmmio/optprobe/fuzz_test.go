package optprobe

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/mmiotrace/mmiotrace/internal/x86"
)

// FuzzWindow plans windows over arbitrary code and builds their detours:
// nothing may panic; every placement must give a patch that guards every
// interior boundary; a detour that builds must decode as instructions,
// and every exact address in it must be an instruction boundary.
func FuzzWindow(f *testing.F) {
	f.Add([]byte{0x8b, 0x47, 0x10, 0x01, 0xc1, 0x90, 0x90}, uint64(0x555555554000))
	f.Add([]byte{0x8b, 0x07, 0x75, 0x10, 0xe8, 0, 0, 0, 0}, uint64(0x401000))
	f.Add([]byte{0x48, 0x8b, 0x05, 0x10, 0, 0, 0}, uint64(0x7f0000001000))
	f.Add([]byte{0xc4, 0xe1, 0x7e, 0x6f, 0x07, 0xc3, 0xcc, 0xcc}, uint64(0x7f0000001000))
	f.Fuzz(func(t *testing.T, code []byte, pc uint64) {
		pc = pc&(1<<46-1) | 1<<40 // somewhere in user space
		w, err := PlanWindow(pc, code)
		if err != nil {
			return
		}
		spec := &Spec{Window: w, Ring: pc + 1<<20,
			Probes: []Probe{{0, Target{Lo: pc + 1<<24, Hi: pc + 1<<24 + 0x4000, Alias: pc + 1<<25, Read: true, Write: true}}}}
		for _, iv := range w.Placements(4) {
			p, err := w.Patch(iv.Lo)
			if err != nil {
				t.Fatalf("patch for placement %#x: %v", iv.Lo, err)
			}
			for _, b := range w.Boundaries() {
				if p[b-pc] != 0xCC {
					t.Fatalf("boundary %#x not guarded", b)
				}
			}
			d, err := Build(spec, iv.Lo)
			if err != nil {
				if !errors.Is(err, ErrNotOptimizable) && !errors.Is(err, ErrNotRelocatable) {
					t.Logf("build: %v", err)
				}
				continue
			}
			starts := map[uint64]bool{}
			for off := 0; off < len(d.Code); {
				in, err := x86asm.Decode(d.Code[off:], 64)
				if err != nil {
					t.Fatalf("detour % x: at %d: %v", d.Code, off, err)
				}
				starts[d.At+uint64(off)] = true
				off += in.Len
			}
			for a := range d.Exact {
				if !starts[a] {
					t.Fatalf("exact address %#x is not an instruction boundary", a)
				}
			}
			for _, s := range d.Slow {
				if !starts[s.Trap] || !starts[s.Ident] || d.Code[s.Trap-1-d.At] != 0xCC {
					t.Fatalf("slow path %+v not on boundaries", s)
				}
			}
		}
	})
}

// FuzzDetour runs an arbitrary instruction through the differential check
// of TestDetourDifferential, when Classify takes it and its memory operand
// can be steered into the traced object.
func FuzzDetour(f *testing.F) {
	f.Add([]byte{0x8b, 0x47, 0x10}, uint64(1))                               // mov eax, [rdi+0x10]
	f.Add([]byte{0xf0, 0x0f, 0xc1, 0x0c, 0x8b}, uint64(2))                   // lock xadd [rbx+rcx*4], ecx
	f.Add([]byte{0x66, 0x0f, 0xba, 0x6c, 0x24, 0x10, 0x07}, uint64(3))       // bts word [rsp+0x10], 7
	f.Add([]byte{0x62, 0xe1, 0xfe, 0x48, 0x6f, 0x8e, 0, 1, 0, 0}, uint64(4)) // vmovdqu64 zmm17, [rsi+0x100]
	f.Add([]byte{0x86, 0x67, 0x04}, uint64(5))                               // xchg [rdi+4], ah
	f.Add([]byte{0x0f, 0xb1, 0x1e}, uint64(6))                               // cmpxchg [rsi], ebx
	f.Add([]byte{0x48, 0xd3, 0x2c, 0x85, 0x10, 0, 0, 0}, uint64(7))          // shr qword [rax*4+0x10], cl
	fx := startFixture(f)
	f.Fuzz(func(t *testing.T, insn []byte, seed uint64) {
		in, err := x86.Decode(insn)
		if err != nil {
			return
		}
		form, err := Classify(in)
		if err != nil || form.RIP || form.Base < 0 && form.Index < 0 {
			return
		}
		insn = insn[:in.Len]
		g := &gen{rnd: rand.New(rand.NewPCG(seed, 9)), f: fx}
		fixtureMu.Lock()
		defer fixtureMu.Unlock()
		g.reset()
		g.fillTraced()
		// Steer the operand into the traced object.
		w := int(form.MemSize)
		ea := fx.Traced + uint64(g.rnd.IntN(int(fx.TracedSize)-w+1))&^uint64(w-1)
		disp := uint64(form.Disp)
		switch {
		case form.Base == rsp:
			g.st.GPR[rsp] = fx.StackHi - 0x400
			if form.Index >= 0 {
				g.st.GPR[form.Index] = 0
			}
			if ea-g.st.GPR[rsp] != disp && form.Index < 0 {
				return
			}
			if form.Index >= 0 {
				g.st.GPR[form.Index] = (ea - g.st.GPR[rsp] - disp) >> form.Scale
				ea = g.st.GPR[rsp] + g.st.GPR[form.Index]<<form.Scale + disp
			}
		case form.Base >= 0:
			if form.Index >= 0 && form.Index != form.Base {
				g.st.GPR[form.Index] = uint64(g.rnd.IntN(64))
			}
			idx := uint64(0)
			if form.Index >= 0 {
				idx = g.st.GPR[form.Index] << form.Scale
			}
			if form.Index == form.Base {
				// [r + r*s]: r*(1+2^s) must be ea - disp.
				n := uint64(1) + 1<<form.Scale
				if (ea-disp)%n != 0 {
					return
				}
				g.st.GPR[form.Base] = (ea - disp) / n
			} else {
				g.st.GPR[form.Base] = ea - idx - disp
			}
		default:
			g.st.GPR[form.Index] = (ea - disp) >> form.Scale
			if g.st.GPR[form.Index]<<form.Scale+disp != ea {
				return
			}
		}
		if form.Kind == x86.KindBT && !form.HasImm {
			g.st.GPR[form.Reg] = g.st.GPR[form.Reg]&^0xFFFF | uint64(g.rnd.IntN(64))
		}
		if gprOperand(&form) && int(form.Reg) == rsp {
			return
		}
		code := append(append([]byte(nil), insn...), 0xff, 0x25, 0, 0, 0, 0)
		code = binary.LittleEndian.AppendUint64(code, fx.Exit)
		c := kase{name: "fuzz", code: code, insn: len(insn), width: w, st: g.st}
		// The instruction's own registers may have moved the operand
		// (a register used twice): only steered cases run.
		r, _ := c.st.regs(g.site())
		if a, n, _, _, ok := in.MemOperand(&r); !ok || a < fx.Traced || a+uint64(n) > fx.Traced+fx.TracedSize {
			return
		}
		if _, err := fx.check(&c, g.rnd); err != nil {
			t.Fatal(err)
		}
	})
}
