package x86

// Kind is the emulation class of a decoded instruction, as Form reports it.
type Kind uint8

// Instruction classes. KindNone is an instruction Emulate does not handle.
const (
	KindNone        = Kind(kNone)
	KindMovLoad     = Kind(kMovLoad)     // reg <- [mem], zero- or sign-extended (Ext)
	KindMovStore    = Kind(kMovStore)    // [mem] <- reg
	KindMovStoreImm = Kind(kMovStoreImm) // [mem] <- imm
	KindALUStore    = Kind(kALUStore)    // [mem] op= src; cmp and test only read
	KindALULoad     = Kind(kALULoad)     // reg op= [mem]; cmp only reads
	KindUnary       = Kind(kUnary)       // inc, dec, not, neg on [mem]
	KindXchg        = Kind(kXchg)        // xchg [mem], reg
	KindCmpxchg     = Kind(kCmpxchg)     // cmpxchg [mem], reg
	KindXadd        = Kind(kXadd)        // xadd [mem], reg
	KindBT          = Kind(kBT)          // bt, bts, btr, btc
	KindMovbeLoad   = Kind(kMovbeLoad)   // reg <- bswap [mem]
	KindMovbeStore  = Kind(kMovbeStore)  // [mem] <- bswap reg
	KindMovs        = Kind(kMovs)        // (rep) movs
	KindStos        = Kind(kStos)        // (rep) stos
	KindLods        = Kind(kLods)        // (rep) lods
	KindVecLoad     = Kind(kVecLoad)     // vector register <- [mem]
	KindVecStore    = Kind(kVecStore)    // [mem] <- vector register
	KindSetcc       = Kind(kSetcc)       // [mem8] <- condition
	KindCmov        = Kind(kCmov)        // reg <- [mem] if condition; the load always happens
	KindImul        = Kind(kImul)        // reg = reg * [mem], or [mem] * imm
	KindShift       = Kind(kShift)       // rol, ror, shl, shr, sar on [mem]
)

// Operations within a Kind (Form.Op).
const (
	OpAdd, OpOr, OpAdc, OpSbb, OpAnd, OpSub, OpXor, OpCmp, OpTest = aluAdd, aluOr, aluAdc, aluSbb, aluAnd, aluSub, aluXor, aluCmp, aluTest
	OpInc, OpDec, OpNot, OpNeg                                    = unInc, unDec, unNot, unNeg
	OpBT, OpBTS, OpBTR, OpBTC                                     = btBT, btBTS, btBTR, btBTC
	OpRol, OpRor, OpShl, OpShr, OpSar                             = 0, 1, 4, 5, 7
)

// Extensions of KindMovLoad (Form.Ext).
const (
	ExtNone = extNone
	ExtZero = extZero
	ExtSign = extSign
)

// Segment overrides that apply in 64-bit mode (Form.Seg).
const (
	SegNone = segNone
	SegFS   = segFS
	SegGS   = segGS
)

// Form describes an emulated instruction's operation, operands and
// encoding, for code that executes it differently, such as a detour that
// performs the access through another mapping (package kmmio/optprobe).
// Register numbers are encoding numbers (0 RAX ... 15 R15; 0-31 for
// vector registers).
type Form struct {
	Kind    Kind
	Op      uint8 // OpXxx within Kind (the condition code for setcc, cmovcc)
	Size    uint8 // operand size in bytes (string element size)
	MemSize uint8 // memory access size in bytes
	Ext     uint8 // ExtXxx for KindMovLoad
	Reg     uint8 // register operand
	High    bool  // Reg is AH, CH, DH or BH
	Lock    bool  // locked (xchg always is)
	Rep     bool
	HasImm  bool // the source is the immediate Imm (ALU, bt, shift, imul)
	Imm     uint64

	// The memory operand: Seg:[Base + Index<<Scale + Disp], or RIP-relative
	// (the address of the next instruction + Disp). Base and Index are -1
	// when absent. Addr32: the address is truncated to 32 bits before the
	// segment base is added.
	Base, Index int8
	Scale       uint8
	RIP         bool
	Addr32      bool
	Seg         uint8
	Disp        int64

	// Vector moves: the access covers VecLen bytes of the register from
	// VecOff; a load zeroes the register's bytes [VecOff+VecLen, Clear).
	// KReg is the EVEX opmask (0: none); Align: the operand must be
	// MemSize-aligned.
	VecLen, VecOff, Clear, Elem, KReg uint8
	Zero, Align                       bool

	Read, Write bool // what the instruction does to its memory operand
}

// Form returns the instruction's form, and false when it is not emulated.
func (in *Inst) Form() (Form, bool) {
	p := &in.p
	if p.kind == kNone {
		return Form{}, false
	}
	return Form{
		Kind: Kind(p.kind), Op: p.op, Size: p.size, MemSize: p.msize, Ext: p.ext,
		Reg: p.reg, High: p.hi, Lock: p.lock, Rep: p.rep, HasImm: p.immOK, Imm: p.imm,
		Base: p.mem.base, Index: p.mem.index, Scale: p.mem.scale, RIP: p.mem.rip,
		Addr32: p.mem.addr32, Seg: p.mem.seg, Disp: p.mem.disp,
		VecLen: p.vlen, VecOff: p.voff, Clear: p.clear, Elem: p.elem, KReg: p.kreg,
		Zero: p.zero, Align: p.align, Read: p.read, Write: p.write,
	}, true
}

// Layout gives the positions of an emulated instruction's fields in its
// encoding; a field that is absent is -1 (DispLen and ImmLen are then 0).
// The legacy prefixes are the bytes before REX (or VEX, or Opcode when
// there is neither). VEX is the position of a C4, C5 or 62 (EVEX) prefix;
// Opcode is the first opcode byte (0F for two-byte opcodes; after the
// VEX or EVEX prefix). Disp also locates the moffs of A0-A3.
type Layout struct {
	REX, VEX, Opcode, ModRM, Disp, Imm int
	DispLen, ImmLen                    int
}

// Layout returns the field positions of an emulated instruction, and false
// for one that is not.
func (in *Inst) Layout() (Layout, bool) {
	p := &in.p
	if p.kind == kNone {
		return Layout{}, false
	}
	a := p.at
	return Layout{
		REX: int(a.rex), VEX: int(a.vex), Opcode: int(a.opcode), ModRM: int(a.modrm),
		Disp: int(a.disp), Imm: int(a.imm), DispLen: int(a.dispLen), ImmLen: int(a.immLen),
	}, true
}

// Bytes returns the instruction's encoding.
func (in *Inst) Bytes() []byte { return in.raw[:in.Len:in.Len] }

// PCRel reports where the instruction holds a RIP-relative displacement or a
// relative branch target: the offset and length (1 or 4) of the field in
// the encoding, and false if it has none. The target (or effective address)
// is the address of the next instruction plus the signed field.
func (in *Inst) PCRel() (off, n int, ok bool) {
	if in.Op.PCRel > 0 {
		return in.Op.PCRelOff, in.Op.PCRel, true
	}
	if in.ripRelVEX() {
		// x86asm leaves PCRel unset for VEX and EVEX operands: the disp32
		// follows the ModRM byte.
		c := in.raw[:in.Len]
		i := 0
		for i < len(c) && isLegacyPrefix(c[i]) {
			i++
		}
		switch c[i] {
		case 0xC5:
			i += 3
		case 0xC4:
			i += 4
		case 0x62:
			i += 5
		}
		return i + 1, 4, true
	}
	return 0, 0, false
}
