// Package x86 decodes and emulates the x86-64 instructions that touch traced
// memory, so that a ptrace-based tracer can perform a faulting access itself,
// with the exact width the program used, instead of unprotecting the page and
// single-stepping.
//
// Decode uses golang.org/x/arch/x86/x86asm for the instruction's length and
// text, and a small decoder of its own for the instructions it emulates: the
// emulated subset is decoded field by field (prefixes, REX, VEX, EVEX, ModRM,
// SIB, displacement, immediate) so that every operand size, register and
// effective address follows the architecture exactly, and anything outside
// the subset, or any encoding the CPU would reject, is left to the CPU.
//
// Emulate applies an instruction to a register file (Regs, and VecRegs for
// vector moves) and performs its data accesses through a Memory. Each access
// is one call of the access's width, so a 4-byte device register read stays a
// 4-byte read. Locked read-modify-write instructions (and xchg, which is
// always locked) are done as load, compute, CompareAndSwap, retried until the
// swap succeeds, so that they stay atomic with respect to other threads.
//
// Emulated instructions (memory forms only; register-only forms never fault
// on a protected page and are not emulated):
//
//   - mov 88/89/8A/8B, C6/C7 (immediate), A0-A3 (moffs, 64- or 32-bit
//     offset); movzx, movsx, movsxd (without 66); movnti; movbe;
//     setcc; cmovcc (the load always happens, a 32-bit cmov always zeroes
//     the upper half)
//   - add, or, adc, sbb, and, sub, xor, cmp in every form with a memory
//     operand (r/m,r; r,r/m; r/m,imm via 80/81/83), test (84/85, F6/F7 /0),
//     inc, dec, not, neg; lock-prefixed forms via CompareAndSwap
//   - xchg (always locked), cmpxchg and xadd (locked or not; cmpxchg writes
//     the old value back on failure, as the CPU does)
//   - bt, bts, btr, btc with a register (signed bit offset, so the accessed
//     unit may be away from the effective address) or immediate bit offset
//   - rol, ror, shl, shr, sar by 1, imm8 or CL (a zero count, or a shift
//     count at or past the width of a byte or word operand, returns
//     ErrUnsupported); imul r, r/m and imul r, r/m, imm
//   - movs, stos, lods with or without rep, b/w/d/q, one Memory call per
//     element, DF honoured, FS/GS override on the source
//   - SSE: movups, movupd, movaps, movapd, movss, movsd, movd, movq
//     (66 0F 6E/7E, F3 0F 7E, 66 0F D6), movdqa, movdqu, movntps, movntpd,
//     movntdq, movntdqa, movlps, movhps, movlpd, movhpd; upper ZMM bits kept
//   - VEX (128 and 256): the same moves as vmov*; destination zeroed up to
//     bit 511
//   - EVEX (128, 256, 512): vmovups, vmovupd, vmovaps, vmovapd, vmovdqa32,
//     vmovdqa64, vmovdqu8, vmovdqu16, vmovdqu32, vmovdqu64 with opmask
//     merging or zeroing. A masked access whose mask selects every element
//     is one full-width access; otherwise each selected element is one
//     access of the element's width and unselected elements are not
//     touched (so they cannot fault). A mask selecting nothing accesses
//     nothing.
//
// Aligned moves whose operand is misaligned return ErrUnsupported, so the
// CPU raises the #GP (or, for some masked EVEX forms on AMD, does not).
// Everything else returns ErrUnsupported: notably rcl and rcr, mul, div
// and one-operand imul, cmpxchg8b/16b, cmps and scas, push and pop with
// memory operands, x87, SSE/AVX arithmetic with memory operands, gathers
// and scatters, EVEX scalar and movd/movq forms, VEX vmovss/vmovsd with
// VEX.L=1, and any encoding the CPU would reject (misplaced LOCK, reserved
// EVEX bits, several prefixes of one group).
//
// Flags are computed exactly where the architecture defines them. Where it
// does not (AF after logic operations, the flags bt leaves, OF after
// multi-bit shifts, SF/ZF/PF after imul), Emulate follows common hardware
// practice; the differential tests found it matches the AMD Zen CPU of the
// development machine for logic operations and bt.
//
// LoadAt, StoreAt and CompareAndSwapAt perform exact-width accesses on memory
// mapped into the tracer itself (for example an alias of a device BAR), using
// one machine instruction of the requested width.
//
// The package is linux/amd64 only, as is the project.
package x86
