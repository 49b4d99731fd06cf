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
// LoadAt, StoreAt and CompareAndSwapAt perform exact-width accesses on memory
// mapped into the tracer itself (for example an alias of a device BAR), using
// one machine instruction of the requested width.
//
// The package is linux/amd64 only, as is the project.
package x86
