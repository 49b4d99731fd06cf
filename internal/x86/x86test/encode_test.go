package x86test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestLegacy checks a few encodings against x86asm's decoder: the REX
// bits, the prefixes, the immediate, and a RIP-relative displacement set
// from the instruction's length.
func TestLegacy(t *testing.T) {
	e := Encoder{Rand: rand.New(rand.NewPCG(1, 2)), At: 0x401000}
	rip := Mem{ModRM: 5, Tail: make([]byte, 4), RIP: true, EA: 0x402000}
	// mov r9, [rip+disp32]: REX.W and REX.R.
	b := e.Legacy(rip, nil, true, false, []byte{0x8B}, 9, nil)
	in, err := x86asm.Decode(b, 64)
	if err != nil {
		t.Fatal(err)
	}
	if in.Op != x86asm.MOV || in.Args[0] != x86asm.R9 {
		t.Fatalf("decoded %v", in)
	}
	m := in.Args[1].(x86asm.Mem)
	if m.Base != x86asm.RIP || uint64(int64(0x401000+len(b))+m.Disp) != 0x402000 {
		t.Fatalf("%v: addresses %#x, want 0x402000", in, int64(0x401000+len(b))+m.Disp)
	}
	// add dword [r12 + rdx*4 + 8], imm32 with fs and 0x67: SIB, REX.B,
	// prefixes, immediate.
	sib := Mem{ModRM: 1<<6 | 4, Tail: []byte{2<<6 | 2<<3 | 4, 8}, RexB: true, Seg: 0x64, Addr32: true}
	b = e.Legacy(sib, nil, false, false, []byte{0x81}, 0, Imm(0x11223344, ImmLen(4)))
	if !bytes.HasPrefix(b, []byte{0x64, 0x67, 0x41, 0x81}) {
		t.Fatalf("prefixes and REX: % x", b)
	}
	if in, err = x86asm.Decode(b, 64); err != nil || in.Op != x86asm.ADD || in.Len != len(b) {
		t.Fatalf("decoded %v, %v from % x", in, err, b)
	}
	if m := in.Args[0].(x86asm.Mem); m.Segment != x86asm.FS || m.Base != x86asm.R12L || m.Index != x86asm.EDX || m.Scale != 4 || m.Disp != 8 {
		t.Fatalf("operand %+v", m)
	}
	if imm := in.Args[1].(x86asm.Imm); imm != 0x11223344 {
		t.Fatalf("immediate %#x", imm)
	}
	// A REX prefix is added when asked, and only then.
	plain := Mem{ModRM: 0}
	if b := e.Legacy(plain, nil, false, false, []byte{0x8B}, 0, nil); len(b) != 2 {
		t.Errorf("mov eax, [rax] is % x", b)
	}
	if b := e.Legacy(plain, nil, false, true, []byte{0x8B}, 0, nil); len(b) != 3 || b[0] != 0x40 {
		t.Errorf("mov eax, [rax] with a forced REX is % x", b)
	}
}
