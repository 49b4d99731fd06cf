package asm

import (
	"encoding/binary"
	"fmt"
)

// General registers by encoding number.
const (
	RAX = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
)

// Asm assembles code to be placed at one address. Every memory operand it
// emits is [base + disp32] (mod 10), and every branch is rel32, so that
// the size of the code does not depend on where it is placed. Labels are
// resolved when the code is finished.
type Asm struct {
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

// New returns an assembler for code that will be placed at address pc.
func New(pc uint64) *Asm {
	return &Asm{pc: pc, labels: map[int]int{}, fixups: map[int][]int{}}
}

// Here returns the offset of the next byte.
func (a *Asm) Here() int { return len(a.b) }

// Bytes emits b as they are.
func (a *Asm) Bytes(b ...byte) { a.b = append(a.b, b...) }

// U32 emits v, little endian.
func (a *Asm) U32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

// PutU32 overwrites the 4 bytes at offset at (from Here) with v.
func (a *Asm) PutU32(at int, v uint32) { binary.LittleEndian.PutUint32(a.b[at:], v) }

// U64 emits v, little endian.
func (a *Asm) U64(v uint64) { a.b = binary.LittleEndian.AppendUint64(a.b, v) }

// Fail records an encoding error; Finish returns the first.
func (a *Asm) Fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, args...)
	}
}

// REX emits a REX prefix when one is needed: W, an extended register in
// reg, index or base, or force (byte registers SPL, BPL, SIL, DIL).
func (a *Asm) REX(w bool, reg, index, base int, force bool) {
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
		a.Bytes(v)
	}
}

// ModRMMem emits ModRM (and SIB) for [base + disp32] with reg in the reg
// field.
func (a *Asm) ModRMMem(reg, base int, disp int32) {
	a.Bytes(0x80 | byte(reg&7)<<3 | byte(base&7))
	if base&7 == RSP {
		a.Bytes(0x24) // SIB: no index, base RSP or R12
	}
	a.U32(uint32(disp))
}

// MemOp emits prefix, REX, opcode and a [base+disp32] operand.
func (a *Asm) MemOp(w bool, opcode []byte, reg, base int, disp int32, byteReg bool) {
	a.REX(w, reg, 0, base, byteReg && reg >= 4 && reg < 8)
	a.Bytes(opcode...)
	a.ModRMMem(reg, base, disp)
}

// RegOp emits REX, opcode and a register-direct ModRM (reg, rm).
func (a *Asm) RegOp(w bool, opcode []byte, reg, rm int) {
	a.REX(w, reg, 0, rm, false)
	a.Bytes(opcode...)
	a.Bytes(0xC0 | byte(reg&7)<<3 | byte(rm&7))
}

// Load64 is mov r, [base+disp] (64-bit).
func (a *Asm) Load64(r, base int, disp int32) { a.MemOp(true, []byte{0x8B}, r, base, disp, false) }

// Store64 is mov [base+disp], r (64-bit).
func (a *Asm) Store64(base int, disp int32, r int) { a.MemOp(true, []byte{0x89}, r, base, disp, false) }

// Store32 is mov [base+disp], r32.
func (a *Asm) Store32(base int, disp int32, r int) {
	a.MemOp(false, []byte{0x89}, r, base, disp, false)
}

// Load32 is mov r32, [base+disp] (zero-extends).
func (a *Asm) Load32(r, base int, disp int32) { a.MemOp(false, []byte{0x8B}, r, base, disp, false) }

// StoreImm32 is mov dword [base+disp], imm.
func (a *Asm) StoreImm32(base int, disp int32, imm uint32) {
	a.MemOp(false, []byte{0xC7}, 0, base, disp, false)
	a.U32(imm)
}

// StoreImm64 is mov qword [base+disp], imm32 (sign-extended).
func (a *Asm) StoreImm64(base int, disp int32, imm int32) {
	a.MemOp(true, []byte{0xC7}, 0, base, disp, false)
	a.U32(uint32(imm))
}

// MovRR is mov dst, src (64-bit).
func (a *Asm) MovRR(dst, src int) { a.RegOp(true, []byte{0x89}, src, dst) }

// MovRR32 is mov dst32, src32, which zero-extends.
func (a *Asm) MovRR32(dst, src int) { a.RegOp(false, []byte{0x89}, src, dst) }

// Movabs is mov r, imm64.
func (a *Asm) Movabs(r int, imm uint64) {
	a.REX(true, 0, 0, r, false)
	a.Bytes(0xB8 + byte(r&7))
	a.U64(imm)
}

// Lea is lea r, [base + disp32].
func (a *Asm) Lea(r, base int, disp int32) { a.MemOp(true, []byte{0x8D}, r, base, disp, false) }

// LeaSIB is lea r, [base + index<<scale + disp32]; base -1 for none.
func (a *Asm) LeaSIB(r, base, index int, scale uint8, disp int32) {
	if index < 0 {
		if base < 0 {
			a.Movabs(r, uint64(int64(disp)))
			return
		}
		a.Lea(r, base, disp)
		return
	}
	b := base
	if b < 0 {
		b = RBP // with mod 00 and base 101: no base, disp32
	}
	a.REX(true, r, index, b, false)
	a.Bytes(0x8D)
	if base < 0 {
		a.Bytes(byte(r&7)<<3 | 4)
	} else {
		a.Bytes(0x80 | byte(r&7)<<3 | 4)
	}
	a.Bytes(scale<<6 | byte(index&7)<<3 | byte(b&7))
	a.U32(uint32(disp))
}

// ALU64Imm is op r, imm32 (81 /digit) on 64 bits: digit 0 add, 4 and,
// 5 sub, 7 cmp.
func (a *Asm) ALU64Imm(digit, r int, imm int32) {
	a.RegOp(true, []byte{0x81}, digit, r)
	a.U32(uint32(imm))
}

// ALU64 is op dst, src (01 add, 09 or, 29 sub, 39 cmp, 85 test).
func (a *Asm) ALU64(opcode byte, dst, src int) { a.RegOp(true, []byte{opcode}, src, dst) }

// Shift64 is shl/shr/sar r, imm8 (digit 4, 5, 7).
func (a *Asm) Shift64(digit, r int, n uint8) {
	a.RegOp(true, []byte{0xC1}, digit, r)
	a.Bytes(n)
}

// Bswap64 is bswap r.
func (a *Asm) Bswap64(r int) {
	a.REX(true, 0, 0, r, false)
	a.Bytes(0x0F, 0xC8+byte(r&7))
}

// Pushfq, Popfq, PushMem, PopMem, RDTSC and Int3 emit the instructions of
// their names (PushMem and PopMem: the qword at [base + disp32]; PUSH
// computes the address before it moves RSP, POP after).
func (a *Asm) Pushfq()                      { a.Bytes(0x9C) }
func (a *Asm) Popfq()                       { a.Bytes(0x9D) }
func (a *Asm) PushMem(base int, disp int32) { a.MemOp(false, []byte{0xFF}, 6, base, disp, false) }
func (a *Asm) PopMem(base int, disp int32)  { a.MemOp(false, []byte{0x8F}, 0, base, disp, false) }
func (a *Asm) RDTSC()                       { a.Bytes(0x0F, 0x31) }
func (a *Asm) Int3()                        { a.Bytes(0xCC) }

// LockCmpxchg is lock cmpxchg [base + disp32], r (64-bit).
func (a *Asm) LockCmpxchg(base int, disp int32, r int) {
	a.Bytes(0xF0)
	a.MemOp(true, []byte{0x0F, 0xB1}, r, base, disp, false)
}

// LoadGS64 is mov r, gs:[disp32].
func (a *Asm) LoadGS64(r int, disp int32) {
	a.Bytes(0x65)
	a.REX(true, r, 0, 0, false)
	a.Bytes(0x8B, byte(r&7)<<3|4, 0x25)
	a.U32(uint32(disp))
}

// Branches. cc is the condition nibble (4 e/z, 5 ne/nz, 7 a, 3 ae, 8 s).
const (
	CCB  = 0x2
	CCAE = 0x3
	CCE  = 0x4
	CCNE = 0x5
	CCA  = 0x7
	CCS  = 0x8
)

// Label returns a new label number.
func (a *Asm) Label() int { a.nlabel++; return a.nlabel }

// Addr returns the address the next byte will have.
func (a *Asm) Addr() uint64 { return a.pc + uint64(len(a.b)) }

// Bind places label l here.
func (a *Asm) Bind(l int) { a.labels[l] = len(a.b) }

// Jcc jumps to label l if condition cc holds.
func (a *Asm) Jcc(cc byte, l int) {
	a.Bytes(0x0F, 0x80|cc)
	a.fixups[l] = append(a.fixups[l], len(a.b))
	a.U32(0)
}

// Jmp jumps to label l.
func (a *Asm) Jmp(l int) {
	a.Bytes(0xE9)
	a.fixups[l] = append(a.fixups[l], len(a.b))
	a.U32(0)
}

// JmpAbs jumps to the absolute address target (rel32: it must be within
// 2 GiB, which finish checks).
func (a *Asm) JmpAbs(target uint64) {
	a.Bytes(0xE9)
	a.abs = append(a.abs, absFixup{len(a.b), target})
	a.U32(0)
}

// JccAbs jumps to the absolute address target if cc holds.
func (a *Asm) JccAbs(cc byte, target uint64) {
	a.Bytes(0x0F, 0x80|cc)
	a.abs = append(a.abs, absFixup{len(a.b), target})
	a.U32(0)
}

// Rel32 returns target - next as a 32-bit displacement, and false if it
// does not fit.
func Rel32(target, next uint64) (int32, bool) {
	d := int64(target - next)
	return int32(d), d == int64(int32(d))
}

// Finish resolves labels and absolute targets and returns the code.
func (a *Asm) Finish() ([]byte, error) {
	if a.err != nil {
		return nil, a.err
	}
	for l, sites := range a.fixups {
		to, ok := a.labels[l]
		if !ok {
			return nil, fmt.Errorf("asm: unbound label %d", l)
		}
		for _, at := range sites {
			binary.LittleEndian.PutUint32(a.b[at:], uint32(int32(to-(at+4))))
		}
	}
	for _, f := range a.abs {
		d, ok := Rel32(f.target, a.pc+uint64(f.at)+4)
		if !ok {
			return nil, fmt.Errorf("asm: branch from %#x to %#x does not fit in 32 bits", a.pc+uint64(f.at), f.target)
		}
		binary.LittleEndian.PutUint32(a.b[f.at:], uint32(d))
	}
	return a.b, nil
}
