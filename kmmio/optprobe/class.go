package optprobe

import (
	"errors"
	"fmt"

	"github.com/mmiotrace/mmiotrace/internal/x86"
)

// ErrNotOptimizable reports an instruction an optimized probe does not
// handle: it stays on the trap path.
var ErrNotOptimizable = errors.New("instruction not optimizable")

// Classify reports whether an optimized probe can perform the instruction's
// access: it returns the instruction's form, or an error wrapping
// ErrNotOptimizable that says why not.
//
// The instruction classes handled, each executed in the detour as the
// program's own instruction (re-encoded on the alias, or on a scratch
// register between a load and a store of the access's width):
//
//   - mov loads and stores of every width, with register or immediate
//     source, moffs forms, movzx, movsx, movsxd, movnti, movbe;
//   - cmov, setcc, imul with a memory source;
//   - xchg, xadd and cmpxchg, locked or not (the detour makes the
//     program's own instruction, lock prefix included, on the alias, and
//     records what it returned);
//   - add, or, adc, sbb, and, sub, xor, cmp, test; inc, dec, not, neg;
//     rol, ror, shl, shr, sar; bt, bts, btr, btc (not locked: a locked
//     read-modify-write needs a compare-and-swap loop, left to the trap
//     path);
//   - SSE, AVX and AVX-512 moves without an opmask.
//
// Not handled: string instructions, masked AVX-512 moves, operands with an FS or GS
// segment override (the detour cannot read the segment base without
// FSGSBASE), and any instruction whose register operand is RSP.
func Classify(in *x86.Inst) (x86.Form, error) {
	f, ok := in.Form()
	if !ok {
		return f, fmt.Errorf("%w: %v is not emulated", ErrNotOptimizable, in)
	}
	no := func(why string) (x86.Form, error) {
		return f, fmt.Errorf("%w: %v: %s", ErrNotOptimizable, in, why)
	}
	if f.Seg != x86.SegNone {
		return no("FS or GS segment override")
	}
	switch f.Kind {
	case x86.KindMovs, x86.KindStos, x86.KindLods:
		return no("string instruction")
	case x86.KindALUStore, x86.KindUnary, x86.KindBT:
		if f.Lock {
			return no("locked read-modify-write")
		}
	case x86.KindVecLoad, x86.KindVecStore:
		if f.KReg != 0 {
			return no("masked vector move")
		}
	case x86.KindShift:
		if f.HasImm {
			c := int(f.Imm & 31)
			if f.Size == 8 {
				c = int(f.Imm & 63)
			}
			if c == 0 || f.Op >= x86.OpShl && c >= int(f.Size)*8 {
				return no("shift count that leaves flags or memory to the CPU")
			}
		}
	}
	if gprOperand(&f) && f.Reg == rsp && !f.High {
		return no("RSP operand")
	}
	if f.Index == rsp {
		return no("RSP index")
	}
	return f, nil
}

// gprOperand reports whether f.Reg is a general register operand (rather
// than an opcode extension, an immediate form or a vector register).
func gprOperand(f *x86.Form) bool {
	switch f.Kind {
	case x86.KindMovLoad, x86.KindMovStore, x86.KindMovbeLoad, x86.KindMovbeStore,
		x86.KindALULoad, x86.KindXchg, x86.KindXadd, x86.KindCmpxchg, x86.KindImul, x86.KindCmov:
		return true
	case x86.KindALUStore, x86.KindBT:
		return !f.HasImm
	}
	return false
}
