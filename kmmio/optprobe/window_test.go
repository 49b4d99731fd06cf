package optprobe

import (
	"github.com/mmiotrace/mmiotrace/internal/x86/asm"

	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestPlanWindow checks how windows are cut: a long instruction alone, a
// short one with the instructions that complete the jump, and the
// instructions that cannot be moved.
func TestPlanWindow(t *testing.T) {
	const pc = 0x555555554000
	nops := []byte{0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90}
	tests := []struct {
		name   string
		code   []byte
		starts []uint64 // instruction offsets, or nil for an error
		err    error
	}{
		{"long instruction", []byte{0x8b, 0x87, 0x10, 0, 0, 0}, []uint64{0}, nil},                      // mov eax, [rdi+0x10] (disp32)
		{"3 + 2", []byte{0x8b, 0x47, 0x10, 0x01, 0xc1}, []uint64{0, 3}, nil},                           // mov; add
		{"2 + 1 + 1 + 3", []byte{0x8b, 0x07, 0x90, 0xf5, 0x48, 0xff, 0xc0}, []uint64{0, 2, 3, 4}, nil}, // mov; nop; cmc; inc
		{"jcc rel8", []byte{0x8b, 0x07, 0x75, 0x10}, []uint64{0, 2, 4}, nil},                           // mov; jne; nop
		{"call at the end", []byte{0x8b, 0x07, 0xe8, 1, 2, 3, 4}, []uint64{0, 2}, nil},                 // mov; call
		{"loop", []byte{0x8b, 0x07, 0xe2, 0x10}, nil, ErrNotRelocatable},                               // mov; loop
		{"jrcxz", []byte{0x8b, 0x07, 0xe3, 0x10}, nil, ErrNotRelocatable},                              // mov; jrcxz
		{"indirect call", []byte{0x8b, 0x07, 0xff, 0xd0}, nil, ErrNotRelocatable},                      // mov; call rax
		{"rip-relative", []byte{0x8b, 0x07, 0x48, 0x8d, 0x05, 1, 2, 3, 4}, []uint64{0, 2}, nil},        // mov; lea rax,[rip+x]
	}
	for _, tt := range tests {
		code := append(append([]byte(nil), tt.code...), nops...)
		w, err := PlanWindow(pc, code)
		if tt.err != nil || tt.starts == nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: error %v, want %v", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var got []uint64
		for _, in := range w.Insns {
			got = append(got, in.PC-pc)
		}
		if len(got) != len(tt.starts) {
			t.Errorf("%s: instructions at %v, want %v", tt.name, got, tt.starts)
			continue
		}
		for i := range got {
			if got[i] != tt.starts[i] {
				t.Errorf("%s: instructions at %v, want %v", tt.name, got, tt.starts)
			}
		}
		if w.End()-w.Start() < JumpLen {
			t.Errorf("%s: window of %d bytes", tt.name, w.End()-w.Start())
		}
	}
}

// TestPatchPuns checks, for windows with interior boundaries under every
// byte of the displacement, that every placement Placements offers gives a
// patch with int3 on every interior boundary, and that the placements come
// nearest first.
func TestPatchPuns(t *testing.T) {
	const pc = 0x7f1234567000
	cases := [][]byte{
		{0x8b, 0x87, 0x10, 0, 0, 0},                   // none
		{0x8b, 0x47, 0x10, 0x01, 0xc1},                // boundary at +3
		{0x8b, 0x07, 0x01, 0xc1, 0x90},                // +2, +4
		{0x8b, 0x07, 0x90, 0xf5, 0x48, 0xff, 0xc0},    // +2, +3, +4
		{0x8b, 0x44, 0x24, 0x08, 0xc3},                // +4
		{0x8b, 0x47, 0x10, 0x48, 0x01, 0xc1},          // +3, tail guard at +5
		{0x48, 0x8b, 0x47, 0x10, 0x48, 0x01, 0xc1, 0}, // +4
	}
	for _, code := range cases {
		code = append(code, make([]byte, 16)...)
		w, err := PlanWindow(pc, code)
		if err != nil {
			t.Fatalf("% x: %v", code, err)
		}
		pl := w.Placements(50)
		if len(pl) == 0 {
			t.Errorf("% x: no placement", code[:w.End()-w.Start()])
			continue
		}
		prev := uint64(0)
		for i, iv := range pl {
			dist := func(a uint64) uint64 {
				if a > pc {
					return a - pc
				}
				return pc - a
			}
			d := min(dist(iv.Lo), dist(iv.Hi))
			if iv.Lo > pc+JumpLen || iv.Hi < pc+JumpLen {
				if i > 0 && d < prev {
					t.Errorf("% x: placement %d (%#x-%#x) nearer than the one before", code[:4], i, iv.Lo, iv.Hi)
				}
				prev = d
			}
			for _, at := range []uint64{iv.Lo, iv.Hi, iv.Lo + (iv.Hi-iv.Lo)/2} {
				p, err := w.Patch(at)
				if err != nil {
					t.Errorf("% x: patch for %#x (placement %#x-%#x): %v", code[:4], at, iv.Lo, iv.Hi, err)
					continue
				}
				if p[0] != 0xE9 || uint64(int64(int32(binary.LittleEndian.Uint32(p[1:]))))+pc+JumpLen != at {
					t.Errorf("% x: patch % x does not jump to %#x", code[:4], p, at)
				}
				for _, b := range w.Boundaries() {
					if p[b-pc] != 0xCC {
						t.Errorf("% x: patch % x: boundary %#x not guarded", code[:4], p, b)
					}
				}
			}
		}
	}
}

// TestRelocate checks the relocated forms of branches, calls and
// RIP-relative operands.
func TestRelocate(t *testing.T) {
	const from, to = 0x401000, 0x40401000
	cases := []struct {
		name string
		code []byte
		want func(t *testing.T, out []byte)
	}{
		{"jne rel8", []byte{0x75, 0x10}, func(t *testing.T, out []byte) {
			checkBranch(t, out, x86asm.JNE, from+2+0x10, to)
		}},
		{"jmp rel32", []byte{0xe9, 0, 1, 0, 0}, func(t *testing.T, out []byte) {
			checkBranch(t, out, x86asm.JMP, from+5+0x100, to)
		}},
		{"call rel32", []byte{0xe8, 0x10, 0, 0, 0}, func(t *testing.T, out []byte) {
			// lea rsp,[rsp-8]; mov dword [rsp], lo; mov dword [rsp+4], hi; jmp target
			in, _ := x86asm.Decode(out, 64)
			if in.Op != x86asm.LEA {
				t.Fatalf("call: first %v", in)
			}
			lo := binary.LittleEndian.Uint32(out[len(out)-5-11-4:])
			hi := binary.LittleEndian.Uint32(out[len(out)-5-4:])
			if uint64(hi)<<32|uint64(lo) != from+5 {
				t.Errorf("call pushes %#x, want %#x", uint64(hi)<<32|uint64(lo), from+5)
			}
			checkBranch(t, out[len(out)-5:], x86asm.JMP, from+5+0x10, to+uint64(len(out)-5))
		}},
		{"rip-relative", []byte{0x8b, 0x05, 0x10, 0, 0, 0}, func(t *testing.T, out []byte) {
			d := int32(binary.LittleEndian.Uint32(out[2:]))
			if uint64(int64(d))+to+6 != from+6+0x10 {
				t.Errorf("operand at %#x, want %#x", uint64(int64(d))+to+6, from+6+0x10)
			}
		}},
		{"plain", []byte{0x01, 0xc1}, func(t *testing.T, out []byte) {
			if string(out) != string([]byte{0x01, 0xc1}) {
				t.Errorf("copied as % x", out)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := PlanWindow(from, append(append([]byte(nil), c.code...), make([]byte, 16)...))
			if err != nil {
				t.Fatal(err)
			}
			a := asm.New(to)
			if _, err := relocate(a, w.Insns[0]); err != nil {
				t.Fatal(err)
			}
			out, err := a.Finish()
			if err != nil {
				t.Fatal(err)
			}
			c.want(t, out)
		})
	}
}

// checkBranch checks that out, at address at, is a branch op to target.
func checkBranch(t *testing.T, out []byte, op x86asm.Op, target, at uint64) {
	t.Helper()
	in, err := x86asm.Decode(out, 64)
	if err != nil || in.Op != op {
		t.Fatalf("% x: %v %v, want %v", out, in, err, op)
	}
	rel, _ := in.Args[0].(x86asm.Rel)
	if got := at + uint64(int64(in.Len)+int64(rel)); got != target {
		t.Errorf("%v to %#x, want %#x", op, got, target)
	}
}
