package x86

import (
	"errors"
	"reflect"
	"testing"
)

const testBase = 0x10000

func mustDecode(t testing.TB, code ...byte) *Inst {
	t.Helper()
	in, err := Decode(code)
	if err != nil {
		t.Fatalf("Decode(% x): %v", code, err)
	}
	if in.Len != len(code) {
		t.Fatalf("Decode(% x): Len %d, want %d", code, in.Len, len(code))
	}
	return in
}

// TestAccessWidths checks that each instruction makes exactly the Memory
// calls it should: one per access, of the access's width.
func TestAccessWidths(t *testing.T) {
	for _, c := range []struct {
		name string
		code []byte
		regs func(r *Regs)
		k1   uint64
		want []access
	}{
		{"mov eax,[rdi]", []byte{0x8B, 0x07}, nil, 0, []access{{'R', testBase, 4}}},
		{"mov [rdi],ax", []byte{0x66, 0x89, 0x07}, nil, 0, []access{{'W', testBase, 2}}},
		{"movzx eax,byte [rdi]", []byte{0x0F, 0xB6, 0x07}, nil, 0, []access{{'R', testBase, 1}}},
		{"add [rdi],eax", []byte{0x01, 0x07}, nil, 0, []access{{'R', testBase, 4}, {'W', testBase, 4}}},
		{"lock add [rdi],eax", []byte{0xF0, 0x01, 0x07}, nil, 0, []access{{'R', testBase, 4}, {'C', testBase, 4}}},
		{"xchg [rdi],rax", []byte{0x48, 0x87, 0x07}, nil, 0, []access{{'R', testBase, 8}, {'C', testBase, 8}}},
		{"cmp [rdi],al", []byte{0x38, 0x07}, nil, 0, []access{{'R', testBase, 1}}},
		{"bt [rdi],eax (bit 40)", []byte{0x0F, 0xA3, 0x07}, func(r *Regs) { r.Rax = 40 }, 0, []access{{'R', testBase + 4, 4}}},
		{"rep movsd x3", []byte{0xF3, 0xA5}, func(r *Regs) { r.Rcx, r.Rsi, r.Rdi = 3, testBase, testBase+64 }, 0,
			[]access{{'R', testBase, 4}, {'W', testBase + 64, 4}, {'R', testBase + 4, 4}, {'W', testBase + 68, 4}, {'R', testBase + 8, 4}, {'W', testBase + 72, 4}}},
		{"rep stosq x0", []byte{0xF3, 0x48, 0xAB}, func(r *Regs) { r.Rcx = 0 }, 0, nil},
		{"std; rep stosw x2", []byte{0xF3, 0x66, 0xAB}, func(r *Regs) { r.Rcx, r.Eflags = 2, r.Eflags|flagDF; r.Rdi += 8 }, 0,
			[]access{{'W', testBase + 8, 2}, {'W', testBase + 6, 2}}},
		{"movdqu xmm0,[rdi]", []byte{0xF3, 0x0F, 0x6F, 0x07}, nil, 0, []access{{'R', testBase, 16}}},
		{"vmovdqu ymm0,[rdi]", []byte{0xC5, 0xFE, 0x6F, 0x07}, nil, 0, []access{{'R', testBase, 32}}},
		{"vmovdqu64 zmm0,[rdi]", []byte{0x62, 0xF1, 0xFE, 0x48, 0x6F, 0x07}, nil, 0, []access{{'R', testBase, 64}}},
		{"vmovdqu64 [rdi]{k1},zmm0 full mask", []byte{0x62, 0xF1, 0xFE, 0x49, 0x7F, 0x07}, nil, 0xFF, []access{{'W', testBase, 64}}},
		{"vmovdqu64 [rdi]{k1},zmm0 mask 0x81", []byte{0x62, 0xF1, 0xFE, 0x49, 0x7F, 0x07}, nil, 0x181,
			[]access{{'W', testBase, 8}, {'W', testBase + 56, 8}}},
		{"vmovdqu32 zmm0{k1},[rdi] mask 0x6", []byte{0x62, 0xF1, 0x7E, 0x49, 0x6F, 0x07}, nil, 0x6,
			[]access{{'R', testBase + 4, 4}, {'R', testBase + 8, 4}}},
		{"vmovdqu8 [rdi]{k1},xmm0 mask 0", []byte{0x62, 0xF1, 0x7F, 0x09, 0x7F, 0x07}, nil, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := mustDecode(t, c.code...)
			r := Regs{Rdi: testBase, Rip: 0x1000, Eflags: 0x202}
			if c.regs != nil {
				c.regs(&r)
			}
			v := VecRegs{}
			v.K[1] = c.k1
			m := &sliceMem{base: testBase, b: make([]byte, 256)}
			if err := Emulate(in, &r, &v, m); err != nil {
				t.Fatalf("Emulate: %v", err)
			}
			if !reflect.DeepEqual(m.log, c.want) {
				t.Errorf("accesses %v, want %v", m.log, c.want)
			}
			if vecOp := c.code[0] == 0xF3 && c.code[1] == 0x0F || c.code[0] == 0xC5 || c.code[0] == 0x62; in.NeedsVec() != vecOp {
				t.Errorf("NeedsVec = %v", in.NeedsVec())
			}
			if load := c.want != nil && c.want[0].op == 'R' && in.NeedsVec(); in.WritesVec() != load {
				t.Errorf("WritesVec = %v", in.WritesVec())
			}
			if r.Rip != 0x1000+uint64(in.Len) {
				t.Errorf("rip %#x, want %#x", r.Rip, 0x1000+in.Len)
			}
		})
	}
}

// TestLockedRetry checks that a failed CompareAndSwap makes a locked
// instruction start over from the load, and that the result reflects the
// final round.
func TestLockedRetry(t *testing.T) {
	in := mustDecode(t, 0xF0, 0x0F, 0xC1, 0x07) // lock xadd [rdi], eax
	r := Regs{Rdi: testBase, Rax: 5}
	m := &sliceMem{base: testBase, b: []byte{10, 0, 0, 0}, failCAS: 2}
	if err := Emulate(in, &r, nil, m); err != nil {
		t.Fatal(err)
	}
	if got := getLE(m.b); got != 15 || r.Rax != 10 {
		t.Errorf("mem %d rax %d, want 15 and 10", got, r.Rax)
	}
	if len(m.log) != 6 {
		t.Errorf("%d accesses (%v), want 3 rounds of load+CAS", len(m.log), m.log)
	}
}

// TestCmpxchgFailure checks the failure path: RAX gets the memory value, ZF
// is clear, and the old value is written back (as the CPU does).
func TestCmpxchgFailure(t *testing.T) {
	in := mustDecode(t, 0xF0, 0x0F, 0xB1, 0x0F) // lock cmpxchg [rdi], ecx
	r := Regs{Rdi: testBase, Rax: 0xFFFFFFFF_00000001, Rcx: 7, Eflags: 0x202 | flagZF}
	m := &sliceMem{base: testBase, b: []byte{2, 0, 0, 0}}
	if err := Emulate(in, &r, nil, m); err != nil {
		t.Fatal(err)
	}
	if r.Rax != 2 || r.Eflags&flagZF != 0 || getLE(m.b) != 2 {
		t.Errorf("rax %#x zf %v mem %d, want 2, false, 2", r.Rax, r.Eflags&flagZF != 0, getLE(m.b))
	}
	r.Rax = 2
	if err := Emulate(in, &r, nil, m); err != nil {
		t.Fatal(err)
	}
	if r.Rax != 2 || r.Eflags&flagZF == 0 || getLE(m.b) != 7 {
		t.Errorf("success: rax %#x zf %v mem %d, want 2, true, 7", r.Rax, r.Eflags&flagZF != 0, getLE(m.b))
	}
}

// TestMemoryErrorNoSideEffects checks that a failing access leaves the
// registers alone, for every kind of instruction.
func TestMemoryErrorNoSideEffects(t *testing.T) {
	for _, code := range [][]byte{
		{0x8B, 0x07}, {0x89, 0x07}, {0xF0, 0x01, 0x07}, {0x03, 0x07}, {0x48, 0x87, 0x07},
		{0x0F, 0xB1, 0x0F}, {0x0F, 0xC1, 0x07}, {0xF7, 0x1F}, {0xFF, 0x07}, {0x0F, 0xAB, 0x07},
		{0xA5}, {0xAB}, {0xAD}, {0x0F, 0x38, 0xF0, 0x07},
		{0xF3, 0x0F, 0x6F, 0x07}, {0x62, 0xF1, 0x7E, 0x49, 0x6F, 0x07}, {0x62, 0xF1, 0x7E, 0xC9, 0x6F, 0x07},
	} {
		in := mustDecode(t, code...)
		r := Regs{Rax: 1, Rcx: 2, Rsi: 0xdead0000, Rdi: 0xdead0000, Rip: 0x1000, Eflags: 0x202}
		r0 := r
		var v VecRegs
		v.K[1] = 0x5555
		v.Z[0][0] = 0xAA
		v0 := v
		m := &sliceMem{base: testBase, b: make([]byte, 64)}
		if err := Emulate(in, &r, &v, m); err == nil {
			t.Errorf("%s: no error for an unmapped address", in)
		}
		if r != r0 || v != v0 {
			t.Errorf("%s: registers changed on error", in)
		}
	}
}

// TestRepPartial checks that a rep string instruction that fails midway
// leaves RCX, RSI and RDI describing the elements done and RIP unchanged.
func TestRepPartial(t *testing.T) {
	in := mustDecode(t, 0xF3, 0xA4) // rep movsb
	r := Regs{Rcx: 10, Rsi: testBase, Rdi: testBase + 60, Rip: 0x1000}
	m := &sliceMem{base: testBase, b: make([]byte, 64)}
	err := Emulate(in, &r, nil, m)
	if err == nil {
		t.Fatal("no error")
	}
	if r.Rcx != 6 || r.Rsi != testBase+4 || r.Rdi != testBase+64 || r.Rip != 0x1000 {
		t.Errorf("rcx %d rsi %#x rdi %#x rip %#x, want 6, +4, +64, 0x1000", r.Rcx, r.Rsi, r.Rdi, r.Rip)
	}
}

// TestUnsupported checks instructions left to the CPU.
func TestUnsupported(t *testing.T) {
	for _, code := range [][]byte{
		{0x0F, 0xA2},                         // cpuid
		{0x01, 0xC0},                         // add eax, eax: no memory operand
		{0xF0, 0x89, 0x07},                   // lock mov: #UD
		{0xF0, 0x39, 0x07},                   // lock cmp: #UD
		{0x0F, 0xC7, 0x0F},                   // cmpxchg8b
		{0xF3, 0xA6},                         // repe cmpsb
		{0xD1, 0x17},                         // rcl dword [rdi], 1
		{0xFF, 0x17},                         // call [rdi]
		{0x0F, 0x6F, 0x07},                   // MMX movq
		{0xC5, 0xFE, 0x10, 0x07},             // vmovss with VEX.L=1
		{0x62, 0xF1, 0x7C, 0x58, 0x10, 0x07}, // EVEX broadcast on a move: #UD
		{0x62, 0xF1, 0x7E, 0xC9, 0x7F, 0x07}, // zeroing-masked store: #UD
		{0x66, 0xF3, 0x0F, 0x6F, 0x07},       // 66 and F3 together
	} {
		in, err := Decode(code)
		if err != nil {
			continue // not even decodable: certainly not emulated
		}
		if in.Emulable() {
			t.Errorf("% x (%s): Emulable", code, in)
		}
		r := Regs{Rdi: testBase, Rip: 0x1000}
		r0 := r
		if err := Emulate(in, &r, &VecRegs{}, &sliceMem{base: testBase, b: make([]byte, 64)}); !errors.Is(err, ErrUnsupported) || r != r0 {
			t.Errorf("% x: Emulate = %v, regs changed %v", code, err, r != r0)
		}
	}
}

// TestMemOperand checks MemOperand, including instructions that are not
// emulated and RIP-relative VEX operands (which x86asm does not mark).
func TestMemOperand(t *testing.T) {
	r := Regs{Rip: 0x1000, Rax: 0x2000, Rdi: 0x3000, Rcx: 3, Fs_base: 0x100000, Gs_base: 0x200000}
	for _, c := range []struct {
		code        []byte
		addr        uint64
		size        int
		read, write bool
	}{
		{[]byte{0x8B, 0x47, 0x08}, 0x3008, 4, true, false},                              // mov eax, [rdi+8]
		{[]byte{0x64, 0x48, 0x89, 0x04, 0x25, 0x10, 0, 0, 0}, 0x100010, 8, false, true}, // mov fs:[0x10], rax
		{[]byte{0x8B, 0x05, 0x10, 0, 0, 0}, 0x1016, 4, true, false},                     // mov eax, [rip+0x10]
		{[]byte{0x83, 0x38, 0x01}, 0x2000, 4, true, false},                              // cmp dword [rax], 1
		{[]byte{0xF0, 0x83, 0x00, 0x01}, 0x2000, 4, true, true},                         // lock add dword [rax], 1
		{[]byte{0x0F, 0x58, 0x07}, 0x3000, 16, true, false},                             // addps xmm0, [rdi] (not emulated)
		{[]byte{0x0F, 0x94, 0x00}, 0x2000, 1, false, true},                              // sete [rax] (not emulated)
		{[]byte{0xD1, 0x20}, 0x2000, 4, true, true},                                     // shl dword [rax], 1
		{[]byte{0xC5, 0xF4, 0x58, 0x05, 0x10, 0, 0, 0}, 0x1018, 32, true, false},        // vaddps ymm0, ymm1, [rip+0x10]
		{[]byte{0x65, 0xC5, 0xF4, 0x58, 0x00}, 0x202000, 32, true, false},               // vaddps ymm0, ymm1, gs:[rax]
		{[]byte{0x0F, 0xA3, 0x08}, 0x2000, 4, true, false},                              // bt [rax], ecx
		{[]byte{0xAB}, 0x3000, 4, false, true},                                          // stosd
	} {
		in := mustDecode(t, c.code...)
		addr, size, read, write, ok := in.MemOperand(&r)
		if !ok || addr != c.addr || size != c.size || read != c.read || write != c.write {
			t.Errorf("% x (%s): MemOperand = %#x %d r=%v w=%v ok=%v, want %#x %d r=%v w=%v", c.code, in, addr, size, read, write, ok, c.addr, c.size, c.read, c.write)
		}
	}
	in := mustDecode(t, 0x01, 0xC0)
	if _, _, _, _, ok := in.MemOperand(&r); ok {
		t.Errorf("add eax, eax: MemOperand ok")
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, code := range [][]byte{nil, {0x8B}, {0x0F}, {0x62, 0xF1}, {0x48}} {
		if in, err := Decode(code); err == nil {
			t.Errorf("Decode(% x) = %s, want error", code, in)
		}
	}
}

func BenchmarkDecodeMovLoad(b *testing.B) {
	code := []byte{0x8B, 0x47, 0x08, 0x90} // mov eax, [rdi+8]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(code); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEmulateMovLoad(b *testing.B) {
	in := mustDecode(b, 0x8B, 0x47, 0x08) // mov eax, [rdi+8]
	m := &nopMem{}
	var r Regs
	b.ReportAllocs()
	for b.Loop() {
		r.Rdi, r.Rip = testBase, 0x1000
		if err := Emulate(in, &r, nil, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEmulateLockAdd(b *testing.B) {
	in := mustDecode(b, 0xF0, 0x01, 0x07) // lock add [rdi], eax
	m := &nopMem{}
	var r Regs
	b.ReportAllocs()
	for b.Loop() {
		r.Rdi, r.Rip = testBase, 0x1000
		if err := Emulate(in, &r, nil, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEmulateVMOVDQU64(b *testing.B) {
	in := mustDecode(b, 0x62, 0xF1, 0xFE, 0x48, 0x6F, 0x07) // vmovdqu64 zmm0, [rdi]
	m := &nopMem{}
	var r Regs
	v := new(VecRegs)
	b.ReportAllocs()
	for b.Loop() {
		r.Rdi, r.Rip = testBase, 0x1000
		if err := Emulate(in, &r, v, m); err != nil {
			b.Fatal(err)
		}
	}
}

// nopMem is a Memory that returns a fixed pattern, to measure Emulate alone.
type nopMem struct{}

func (nopMem) Load(addr uint64, b []byte) error {
	for i := range b {
		b[i] = byte(addr) + byte(i)
	}
	return nil
}
func (nopMem) Store(addr uint64, b []byte) error { return nil }
func (nopMem) CompareAndSwap(addr uint64, old, new []byte) (bool, error) {
	return true, nil
}
