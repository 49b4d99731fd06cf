package optprobe

import (
	"encoding/binary"
	"fmt"
)

// General registers by encoding number.
const (
	rax = iota
	rcx
	rdx
	rbx
	rsp
	rbp
	rsi
	rdi
	r8
	r9
	r10
	r11
	r12
	r13
	r14
	r15
)

// asm is the small x86-64 assembler the detours are written with. Every
// memory operand it emits is [base + disp32] (mod 10), and every branch is
// rel32, so that the size of a detour does not depend on where it is
// placed. Labels are resolved when the code is finished.
type asm struct {
	b      []byte
	pc     uint64        // the address b[0] will have
	labels map[int]int   // label -> offset
	fixups map[int][]int // label -> offsets of rel32 fields to patch
	abs    []absFixup    // rel32 fields aimed at absolute addresses
	err    error         // the first encoding error
	nlabel int
}

type absFixup struct {
	at     int
	target uint64
}

func newAsm(pc uint64) *asm {
	return &asm{pc: pc, labels: map[int]int{}, fixups: map[int][]int{}}
}

func (a *asm) here() int { return len(a.b) }

func (a *asm) bytes(b ...byte) { a.b = append(a.b, b...) }

func (a *asm) u32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

func (a *asm) u64(v uint64) { a.b = binary.LittleEndian.AppendUint64(a.b, v) }

func (a *asm) fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, args...)
	}
}

// rex emits a REX prefix when one is needed: W, an extended register in
// reg, index or base, or force (byte registers SPL, BPL, SIL, DIL).
func (a *asm) rex(w bool, reg, index, base int, force bool) {
	v := byte(0x40)
	if w {
		v |= 8
	}
	if reg&8 != 0 {
		v |= 4
	}
	if index&8 != 0 {
		v |= 2
	}
	if base&8 != 0 {
		v |= 1
	}
	if v != 0x40 || force {
		a.bytes(v)
	}
}

// modrmMem emits ModRM (and SIB) for [base + disp32] with reg in the reg
// field.
func (a *asm) modrmMem(reg, base int, disp int32) {
	a.bytes(0x80 | byte(reg&7)<<3 | byte(base&7))
	if base&7 == rsp {
		a.bytes(0x24) // SIB: no index, base RSP or R12
	}
	a.u32(uint32(disp))
}

// memOp emits prefix, REX, opcode and a [base+disp32] operand.
func (a *asm) memOp(w bool, opcode []byte, reg, base int, disp int32, byteReg bool) {
	a.rex(w, reg, 0, base, byteReg && reg >= 4 && reg < 8)
	a.bytes(opcode...)
	a.modrmMem(reg, base, disp)
}

// regOp emits REX, opcode and a register-direct ModRM (reg, rm).
func (a *asm) regOp(w bool, opcode []byte, reg, rm int) {
	a.rex(w, reg, 0, rm, false)
	a.bytes(opcode...)
	a.bytes(0xC0 | byte(reg&7)<<3 | byte(rm&7))
}

// load64 is mov r, [base+disp] (64-bit).
func (a *asm) load64(r, base int, disp int32) { a.memOp(true, []byte{0x8B}, r, base, disp, false) }

// store64 is mov [base+disp], r (64-bit).
func (a *asm) store64(base int, disp int32, r int) { a.memOp(true, []byte{0x89}, r, base, disp, false) }

// store32 is mov [base+disp], r32.
func (a *asm) store32(base int, disp int32, r int) {
	a.memOp(false, []byte{0x89}, r, base, disp, false)
}

// load32 is mov r32, [base+disp] (zero-extends).
func (a *asm) load32(r, base int, disp int32) { a.memOp(false, []byte{0x8B}, r, base, disp, false) }

// storeImm32 is mov dword [base+disp], imm.
func (a *asm) storeImm32(base int, disp int32, imm uint32) {
	a.memOp(false, []byte{0xC7}, 0, base, disp, false)
	a.u32(imm)
}

// storeImm64 is mov qword [base+disp], imm32 (sign-extended).
func (a *asm) storeImm64(base int, disp int32, imm int32) {
	a.memOp(true, []byte{0xC7}, 0, base, disp, false)
	a.u32(uint32(imm))
}

// movRR is mov dst, src (64-bit).
func (a *asm) movRR(dst, src int) { a.regOp(true, []byte{0x89}, src, dst) }

// movRR32 is mov dst32, src32, which zero-extends.
func (a *asm) movRR32(dst, src int) { a.regOp(false, []byte{0x89}, src, dst) }

// movabs is mov r, imm64.
func (a *asm) movabs(r int, imm uint64) {
	a.rex(true, 0, 0, r, false)
	a.bytes(0xB8 + byte(r&7))
	a.u64(imm)
}

// lea is lea r, [base + disp32].
func (a *asm) lea(r, base int, disp int32) { a.memOp(true, []byte{0x8D}, r, base, disp, false) }

// leaSIB is lea r, [base + index<<scale + disp32]; base -1 for none.
func (a *asm) leaSIB(r, base, index int, scale uint8, disp int32) {
	if index < 0 {
		if base < 0 {
			a.movabs(r, uint64(int64(disp)))
			return
		}
		a.lea(r, base, disp)
		return
	}
	b := base
	if b < 0 {
		b = rbp // with mod 00 and base 101: no base, disp32
	}
	a.rex(true, r, index, b, false)
	a.bytes(0x8D)
	if base < 0 {
		a.bytes(byte(r&7)<<3 | 4)
	} else {
		a.bytes(0x80 | byte(r&7)<<3 | 4)
	}
	a.bytes(scale<<6 | byte(index&7)<<3 | byte(b&7))
	a.u32(uint32(disp))
}

// alu64Imm is op r, imm32 (81 /digit) on 64 bits: digit 0 add, 4 and,
// 5 sub, 7 cmp.
func (a *asm) alu64Imm(digit, r int, imm int32) {
	a.regOp(true, []byte{0x81}, digit, r)
	a.u32(uint32(imm))
}

// alu64 is op dst, src (01 add, 09 or, 29 sub, 39 cmp, 85 test).
func (a *asm) alu64(opcode byte, dst, src int) { a.regOp(true, []byte{opcode}, src, dst) }

// shift64 is shl/shr/sar r, imm8 (digit 4, 5, 7).
func (a *asm) shift64(digit, r int, n uint8) {
	a.regOp(true, []byte{0xC1}, digit, r)
	a.bytes(n)
}

// bswap64 is bswap r.
func (a *asm) bswap64(r int) {
	a.rex(true, 0, 0, r, false)
	a.bytes(0x0F, 0xC8+byte(r&7))
}

// pushfq, popfq; push and pop a qword at [base+disp] (PUSH computes the
// address before it moves RSP, POP after).
func (a *asm) pushfq()                      { a.bytes(0x9C) }
func (a *asm) popfq()                       { a.bytes(0x9D) }
func (a *asm) pushMem(base int, disp int32) { a.memOp(false, []byte{0xFF}, 6, base, disp, false) }
func (a *asm) popMem(base int, disp int32)  { a.memOp(false, []byte{0x8F}, 0, base, disp, false) }
func (a *asm) rdtsc()                       { a.bytes(0x0F, 0x31) }
func (a *asm) int3()                        { a.bytes(0xCC) }
func (a *asm) lockCmpxchg(base int, disp int32, r int) {
	a.bytes(0xF0)
	a.memOp(true, []byte{0x0F, 0xB1}, r, base, disp, false)
}

// loadGS64 is mov r, gs:[disp32].
func (a *asm) loadGS64(r int, disp int32) {
	a.bytes(0x65)
	a.rex(true, r, 0, 0, false)
	a.bytes(0x8B, byte(r&7)<<3|4, 0x25)
	a.u32(uint32(disp))
}

// Branches. cc is the condition nibble (4 e/z, 5 ne/nz, 7 a, 3 ae, 8 s).
const (
	ccB  = 0x2
	ccAE = 0x3
	ccE  = 0x4
	ccNE = 0x5
	ccA  = 0x7
	ccS  = 0x8
)

// label returns a new label number.
func (a *asm) label() int { a.nlabel++; return a.nlabel }

// addr returns the address the next byte will have.
func (a *asm) addr() uint64 { return a.pc + uint64(len(a.b)) }

// bind places label l here.
func (a *asm) bind(l int) { a.labels[l] = len(a.b) }

// jcc jumps to label l if condition cc holds.
func (a *asm) jcc(cc byte, l int) {
	a.bytes(0x0F, 0x80|cc)
	a.fixups[l] = append(a.fixups[l], len(a.b))
	a.u32(0)
}

// jmp jumps to label l.
func (a *asm) jmp(l int) {
	a.bytes(0xE9)
	a.fixups[l] = append(a.fixups[l], len(a.b))
	a.u32(0)
}

// jmpAbs jumps to the absolute address target (rel32: it must be within
// 2 GiB, which finish checks).
func (a *asm) jmpAbs(target uint64) {
	a.bytes(0xE9)
	a.abs = append(a.abs, absFixup{len(a.b), target})
	a.u32(0)
}

// jccAbs jumps to the absolute address target if cc holds.
func (a *asm) jccAbs(cc byte, target uint64) {
	a.bytes(0x0F, 0x80|cc)
	a.abs = append(a.abs, absFixup{len(a.b), target})
	a.u32(0)
}

// rel32 returns target - next as a 32-bit displacement, and false if it
// does not fit.
func rel32(target, next uint64) (int32, bool) {
	d := int64(target - next)
	return int32(d), d == int64(int32(d))
}

// finish resolves labels and absolute targets and returns the code.
func (a *asm) finish() ([]byte, error) {
	if a.err != nil {
		return nil, a.err
	}
	for l, sites := range a.fixups {
		to, ok := a.labels[l]
		if !ok {
			return nil, fmt.Errorf("optprobe: unbound label %d", l)
		}
		for _, at := range sites {
			binary.LittleEndian.PutUint32(a.b[at:], uint32(int32(to-(at+4))))
		}
	}
	for _, f := range a.abs {
		d, ok := rel32(f.target, a.pc+uint64(f.at)+4)
		if !ok {
			return nil, fmt.Errorf("optprobe: branch from %#x to %#x does not fit in 32 bits", a.pc+uint64(f.at), f.target)
		}
		binary.LittleEndian.PutUint32(a.b[f.at:], uint32(d))
	}
	return a.b, nil
}
