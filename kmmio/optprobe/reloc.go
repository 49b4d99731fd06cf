package optprobe

import (
	"github.com/mmiotrace/mmiotrace/internal/x86/asm"

	"encoding/binary"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// relocate emits a copy of in (originally at in.PC) that does the same at
// the assembler's current address: RIP-relative displacements are
// recomputed, short branches become rel32 ones to the same targets, and a
// call (which relocatable allows only at the end of a window) pushes the
// original return address and jumps, so that the callee returns to the
// program's code and unwinders see the program's own addresses. It returns
// the instructions after the first of a copy that takes several (a call),
// as offsets from its start, with how far each has moved RSP.
func relocate(a *asm.Asm, in Insn) ([]midInsn, error) {
	raw := in.Inst.Bytes()
	off, n, ok := in.Inst.PCRel()
	if !ok {
		a.Bytes(raw...)
		return nil, nil
	}
	var rel int64
	if n == 1 {
		rel = int64(int8(raw[off]))
	} else {
		rel = int64(int32(binary.LittleEndian.Uint32(raw[off:])))
	}
	target := in.End() + uint64(rel)
	if !isBranch(in.Inst) {
		// A RIP-relative operand: same bytes, new displacement.
		start := a.Here()
		a.Bytes(raw...)
		d, ok := asm.Rel32(target, a.Addr())
		if !ok {
			return nil, fmt.Errorf("optprobe: %v at %#x: operand %#x out of reach of the detour", in.Inst, in.PC, target)
		}
		a.PutU32(start+off, uint32(d))
		return nil, nil
	}
	switch op := in.Inst.Op.Op; op {
	case x86asm.JMP:
		a.JmpAbs(target)
	case x86asm.CALL:
		ret := in.End()
		start := a.Here()
		a.Lea(rsp, rsp, -8) // lea, not sub: the flags are the program's
		var mids []midInsn
		mids = append(mids, midInsn{a.Here() - start, 8})
		a.StoreImm32(rsp, 0, uint32(ret))
		mids = append(mids, midInsn{a.Here() - start, 8})
		a.StoreImm32(rsp, 4, uint32(ret>>32))
		mids = append(mids, midInsn{a.Here() - start, 8})
		a.JmpAbs(target)
		return mids, nil
	default:
		cc, ok := jccCond[op]
		if !ok {
			return nil, fmt.Errorf("optprobe: %v at %#x: %w", in.Inst, in.PC, ErrNotRelocatable)
		}
		a.JccAbs(cc, target)
	}
	return nil, nil
}

// midInsn is an instruction inside a relocated copy: its offset from the
// copy's start, and how far below the program's RSP the copy has moved RSP.
type midInsn struct {
	off int
	rsp int64
}

// jccCond maps conditional jumps to their condition nibble.
var jccCond = map[x86asm.Op]byte{
	x86asm.JO: 0x0, x86asm.JNO: 0x1, x86asm.JB: 0x2, x86asm.JAE: 0x3,
	x86asm.JE: 0x4, x86asm.JNE: 0x5, x86asm.JBE: 0x6, x86asm.JA: 0x7,
	x86asm.JS: 0x8, x86asm.JNS: 0x9, x86asm.JP: 0xA, x86asm.JNP: 0xB,
	x86asm.JL: 0xC, x86asm.JGE: 0xD, x86asm.JLE: 0xE, x86asm.JG: 0xF,
}
