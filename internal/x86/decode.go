package x86

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"
)

// Regs is the general-purpose register file of a tracee, as PTRACE_GETREGS
// returns it.
type Regs = unix.PtraceRegs

// MaxLen is the architectural limit on an instruction's length.
const MaxLen = 15

// ErrUnsupported reports that Emulate does not handle an instruction (or an
// instance of it, such as a misaligned aligned move whose #GP only the CPU can
// raise). The tracer should single-step the instruction instead. Emulate
// returns it before any side effect.
var ErrUnsupported = errors.New("x86: instruction not emulated")

var errTruncated = errors.New("truncated or invalid instruction")

// kind is the emulation class of a decoded instruction.
type kind uint8

const (
	kNone        kind = iota
	kMovLoad          // reg <- [mem], zero- or sign-extended per ext
	kMovStore         // [mem] <- reg
	kMovStoreImm      // [mem] <- imm
	kALUStore         // [mem] = [mem] op src (src reg or imm); cmp/test only read
	kALULoad          // reg = reg op [mem]; cmp/test only set flags
	kUnary            // inc, dec, not, neg on [mem]
	kXchg             // xchg [mem], reg (always locked)
	kCmpxchg          // cmpxchg [mem], reg
	kXadd             // xadd [mem], reg
	kBT               // bt, bts, btr, btc [mem], reg/imm
	kMovbeLoad        // reg <- bswap [mem]
	kMovbeStore       // [mem] <- bswap reg
	kMovs             // (rep) movs
	kStos             // (rep) stos
	kLods             // (rep) lods
	kVecLoad          // xmm/ymm/zmm <- [mem]
	kVecStore         // [mem] <- xmm/ymm/zmm
	kSetcc            // [mem8] <- condition (op holds cc)
	kCmov             // reg <- [mem] if condition (op holds cc); the load always happens
	kImul             // reg = reg * [mem] or reg = [mem] * imm (immOK)
	kShift            // rol, ror, shl, shr, sar on [mem] by imm (immOK) or CL
)

// ALU operations, numbered as in the opcode map (00-3F and group 1 /digit).
const (
	aluAdd = iota
	aluOr
	aluAdc
	aluSbb
	aluAnd
	aluSub
	aluXor
	aluCmp
	aluTest // 84/85, F6/F7 /0
)

// Unary operations (kUnary), by group 3/4/5 /digit meaning.
const (
	unInc = iota
	unDec
	unNot
	unNeg
)

// Bit-test operations (kBT).
const (
	btBT = iota
	btBTS
	btBTR
	btBTC
)

// Register extension modes for kMovLoad.
const (
	extNone = iota // plain move of size bytes
	extZero        // movzx: zero-extend msize bytes to size
	extSign        // movsx, movsxd: sign-extend msize bytes to size
)

// Segment bases that can apply in 64-bit mode.
const (
	segNone = iota
	segFS
	segGS
)

// memRef is a decoded memory operand.
type memRef struct {
	base   int8 // GPR number, or -1
	index  int8 // GPR number, or -1
	scale  uint8
	rip    bool // RIP-relative: base is the address of the next instruction
	addr32 bool // 67 prefix: the effective address is truncated to 32 bits
	seg    uint8
	disp   int64
}

// plan is everything Emulate needs, worked out once at decode time.
type plan struct {
	kind  kind
	op    uint8 // aluXxx, unXxx or btXxx
	size  uint8 // operand size in bytes (GPR ops, string element size)
	msize uint8 // memory access size in bytes
	ext   uint8 // extNone, extZero, extSign
	reg   uint8 // register operand (GPR 0-15 or vector 0-31)
	hi    bool  // reg is AH, CH, DH or BH
	lock  bool
	rep   bool
	immOK bool // src is imm rather than reg (kALUStore, kBT)
	imm   uint64
	mem   memRef

	// Vector moves.
	vlen  uint8 // bytes of the register the access covers (== msize)
	voff  uint8 // offset of those bytes in the register (8 for movhps)
	clear uint8 // destination register bytes [voff+vlen, clear) are zeroed
	elem  uint8 // element size for masking
	kreg  uint8 // opmask register, 0 for none
	zero  bool  // zeroing-masking instead of merging
	align bool  // the access must be msize-aligned (else #GP)

	read, write bool // what the instruction does to its memory operand

	// Where the fields are in the encoding, for code that re-encodes the
	// instruction (Inst.Layout); -1 when absent.
	at layout
}

// layout holds the positions of an instruction's fields in its encoding.
type layout struct {
	rex, vex, opcode, modrm, disp, imm int8
	dispLen, immLen                    int8
}

// Inst is a decoded instruction.
type Inst struct {
	// Len is the instruction's length in bytes.
	Len int
	// Op is the x86asm decoding, for display and for callers that want
	// more than this package needs.
	Op x86asm.Inst

	raw [MaxLen]byte // the encoding, Len bytes
	p   plan
}

// Decode decodes the instruction at the start of code, which holds up to 15
// bytes read at the tracee's RIP (fewer near the end of a mapping). It fails
// only if the bytes are not a valid instruction; whether the instruction is
// emulated is reported by Emulable.
func Decode(code []byte) (*Inst, error) {
	in := new(Inst)
	if err := in.decode(code); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Inst) decode(code []byte) error {
	if len(code) > MaxLen {
		code = code[:MaxLen]
	}
	op, err := decodeAsm(code)
	if err == nil && op.Op == 0 {
		// x86asm reports bytes it cannot make an instruction of (a lone
		// prefix, a truncated encoding) as a prefix-only "instruction".
		err = errTruncated
	}
	if err != nil {
		return fmt.Errorf("x86: decode % x: %w", code, err)
	}
	in.Op = op
	in.Len = op.Len
	copy(in.raw[:], code[:op.Len])
	if in.ripRelVEX() {
		// x86asm decodes RIP-relative operands of VEX and EVEX
		// instructions as absolute ones.
		for i, a := range in.Op.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == 0 && m.Index == 0 {
				m.Base = x86asm.RIP
				in.Op.Args[i] = m
			}
		}
	}
	in.p = plan{}
	var d decoder
	p, n, ok := d.parse(code)
	// Both decoders must agree on the length, and x86asm must not consider
	// the prefixes invalid, before we take the instruction on.
	if ok && n == op.Len && !badPrefix(&op) {
		in.p = p
	}
	return nil
}

// decodeAsm decodes code with x86asm. x86asm does not take segment or
// address-size prefixes before a VEX or EVEX prefix (it decodes the prefix
// alone), which the CPU accepts; such instructions are decoded without the
// prefixes, which are then put back into the result.
func decodeAsm(code []byte) (x86asm.Inst, error) {
	k := 0
	seg := x86asm.Reg(0)
	addr32 := false
	for k < len(code) {
		switch code[k] {
		case 0x26, 0x2E, 0x36, 0x3E:
			seg = 0
		case 0x64:
			seg = x86asm.FS
		case 0x65:
			seg = x86asm.GS
		case 0x67:
			addr32 = true
		default:
			goto done
		}
		k++
	}
done:
	if k == 0 || k >= len(code) || (code[k] != 0xC4 && code[k] != 0xC5 && code[k] != 0x62) {
		return x86asm.Decode(code, 64)
	}
	op, err := x86asm.Decode(code[k:], 64)
	if err != nil {
		return op, err
	}
	op.Len += k
	for i, a := range op.Args {
		if m, ok := a.(x86asm.Mem); ok {
			m.Segment = seg
			if addr32 && m.Base >= x86asm.RAX && m.Base <= x86asm.R15 {
				m.Base = m.Base - x86asm.RAX + x86asm.EAX
			}
			if addr32 && m.Index >= x86asm.RAX && m.Index <= x86asm.R15 {
				m.Index = m.Index - x86asm.RAX + x86asm.EAX
			}
			op.Args[i] = m
		}
	}
	if addr32 {
		op.AddrSize = 32
	}
	return op, nil
}

func badPrefix(op *x86asm.Inst) bool {
	for _, p := range op.Prefix {
		if p == 0 {
			break
		}
		if p&x86asm.PrefixInvalid != 0 {
			return true
		}
	}
	return false
}

// Emulable reports whether Emulate executes this instruction. Even then
// Emulate may return ErrUnsupported for a particular execution (a misaligned
// operand of an aligned vector move, whose #GP only the CPU can deliver).
func (in *Inst) Emulable() bool { return in.p.kind != kNone }

// NeedsVec reports whether Emulate reads or writes VecRegs for this
// instruction, so that the tracer fetches the XSTATE only when needed.
func (in *Inst) NeedsVec() bool { return in.p.kind == kVecLoad || in.p.kind == kVecStore }

// WritesVec reports whether Emulate may change VecRegs (a vector load), so
// that the tracer writes the XSTATE back only when needed.
func (in *Inst) WritesVec() bool { return in.p.kind == kVecLoad }

// String returns the instruction in Intel syntax.
func (in *Inst) String() string { return x86asm.IntelSyntax(in.Op, 0, nil) }

// decoder parses the emulated subset of the instruction set.
type decoder struct {
	code []byte
	pos  int

	opsz16 bool // 66
	addr32 bool // 67
	lock   bool // F0
	rep    byte // last of F2/F3, or 0
	nrep   int  // number of F2/F3 prefixes
	seg    uint8
	rex    byte // 0 if none

	// VEX/EVEX fields, valid when vex != 0.
	vex   byte // 0xC4 (also for C5), 0x62 for EVEX
	vmap  byte
	vW    bool
	vL    uint8 // vector length in bytes: 16, 32, 64
	vpp   byte  // 0 none, 1 66, 2 F3, 3 F2
	vvvv  byte  // VEX.vvvv un-inverted: 0 when unused, as every move here requires
	vR    byte  // extension bits for ModRM.reg (bit 3 and, for EVEX, bit 4)
	vX    byte  // extension for SIB.index (bit 3); EVEX: also rm bit 4 for register forms
	vB    byte  // extension for ModRM.rm / SIB.base (bit 3)
	vVp   bool  // EVEX.V' (as encoded, inverted: true means not set)
	aaa   uint8 // EVEX opmask
	z     bool  // EVEX zeroing
	bcast bool  // EVEX.b

	p *plan // the plan being filled, for field positions
}

func (d *decoder) byte() (byte, bool) {
	if d.pos >= len(d.code) || d.pos >= MaxLen {
		return 0, false
	}
	b := d.code[d.pos]
	d.pos++
	return b, true
}

func (d *decoder) imm(n int) (uint64, bool) {
	if d.pos+n > len(d.code) || d.pos+n > MaxLen {
		return 0, false
	}
	if d.p != nil && d.p.at.imm < 0 {
		d.p.at.imm, d.p.at.immLen = int8(d.pos), int8(n)
	}
	b := d.code[d.pos : d.pos+n]
	d.pos += n
	switch n {
	case 1:
		return uint64(int64(int8(b[0]))), true
	case 2:
		return uint64(int64(int16(binary.LittleEndian.Uint16(b)))), true
	case 4:
		return uint64(int64(int32(binary.LittleEndian.Uint32(b)))), true
	case 8:
		return binary.LittleEndian.Uint64(b), true
	}
	return 0, false
}

// disp reads a displacement (or moffs) of n bytes, sign-extended like an
// immediate but not recorded as one.
func (d *decoder) disp(n int) (uint64, bool) {
	p := d.p
	d.p = nil
	v, ok := d.imm(n)
	d.p = p
	return v, ok
}

// parse decodes code. It returns ok=false for anything outside the emulated
// subset or anything the CPU would reject with #UD.
func (d *decoder) parse(code []byte) (p plan, n int, ok bool) {
	d.code = code
	d.p = &p
	p.mem.base, p.mem.index = -1, -1
	p.at = layout{-1, -1, -1, -1, -1, -1, 0, 0}
	nseg := 0
prefixes:
	for {
		b, ok := d.byte()
		if !ok {
			return p, 0, false
		}
		switch b {
		case 0x66:
			d.opsz16 = true
		case 0x67:
			d.addr32 = true
		case 0xF0:
			d.lock = true
		case 0xF2, 0xF3:
			d.rep = b
			d.nrep++
		case 0x26, 0x2E, 0x36, 0x3E:
			d.seg = segNone
			nseg++
		case 0x64:
			d.seg = segFS
			nseg++
		case 0x65:
			d.seg = segGS
			nseg++
		default:
			d.pos--
			break prefixes
		}
	}
	if nseg > 1 || d.nrep > 1 {
		// Several prefixes of one group: the CPU's choice is unspecified.
		return p, 0, false
	}
	b, _ := d.byte()
	if b&0xF0 == 0x40 {
		p.at.rex = int8(d.pos - 1)
		d.rex = b
		b, ok = d.byte()
		if !ok {
			return p, 0, false
		}
	}
	p.at.opcode = int8(d.pos - 1)
	switch {
	case b == 0xC4 || b == 0xC5 || b == 0x62:
		p.at.vex, p.at.opcode = int8(d.pos-1), -1 // set after the VEX prefix
		if d.rex != 0 || d.opsz16 || d.rep != 0 || d.lock {
			return p, 0, false // #UD
		}
		ok = d.parseVEX(b, &p)
	case b == 0x0F:
		ok = d.parse0F(&p)
	default:
		ok = d.parse1(b, &p)
	}
	if !ok {
		return p, 0, false
	}
	// Until here p.lock meant "accepts LOCK"; from here it means "is locked".
	if d.lock && !p.lock {
		return p, 0, false // LOCK on an instruction that does not take it: #UD
	}
	p.lock = d.lock || p.kind == kXchg
	p.mem.seg = d.seg
	p.mem.addr32 = d.addr32
	return p, d.pos, true
}

// opSize is the operand size of a non-byte legacy instruction.
func (d *decoder) opSize() uint8 {
	switch {
	case d.rex&8 != 0:
		return 8
	case d.opsz16:
		return 2
	}
	return 4
}

// modrm decodes ModRM, SIB and displacement into p.mem and returns the reg
// field (extended by REX.R, VEX.R or EVEX.R and R'). Register forms (mod=3)
// return ok=false: every emulated instruction here accesses memory.
// dispN is the EVEX disp8 scale (1 for everything else).
func (d *decoder) modrm(p *plan, dispN int64) (reg uint8, ok bool) {
	p.at.modrm = int8(d.pos)
	m, ok := d.byte()
	if !ok {
		return 0, false
	}
	mod, rm := m>>6, m&7
	reg = m >> 3 & 7
	var rexR, rexX, rexB byte
	if d.vex != 0 {
		rexR, rexX, rexB = d.vR, d.vX&8, d.vB
	} else {
		rexR, rexX, rexB = (d.rex&4)<<1, (d.rex&2)<<2, (d.rex&1)<<3
	}
	reg |= rexR
	if mod == 3 {
		return reg, false
	}
	switch {
	case rm == 4:
		sib, ok := d.byte()
		if !ok {
			return 0, false
		}
		p.mem.scale = sib >> 6
		if idx := sib>>3&7 | rexX; idx != 4 {
			p.mem.index = int8(idx)
		}
		if base := sib & 7; base == 5 && mod == 0 {
			mod = 2 // disp32, no base
		} else {
			p.mem.base = int8(base | rexB)
		}
	case rm == 5 && mod == 0:
		p.mem.rip = true
		mod = 2
	default:
		p.mem.base = int8(rm | rexB)
	}
	p.at.disp = int8(d.pos)
	switch mod {
	case 1:
		v, ok := d.disp(1)
		if !ok {
			return 0, false
		}
		p.mem.disp = int64(v) * dispN
		p.at.dispLen = 1
	case 2:
		v, ok := d.disp(4)
		if !ok {
			return 0, false
		}
		p.mem.disp = int64(v)
		p.at.dispLen = 4
	}
	return reg, true
}

// gpr sets p.reg and p.hi for a general register operand of the given size.
func (d *decoder) gpr(p *plan, reg uint8, size uint8) {
	p.reg = reg
	if size == 1 && d.rex == 0 && reg >= 4 && reg < 8 {
		p.reg, p.hi = reg-4, true
	}
}

// immSize is the size of an Iz immediate for operand size sz.
func immSize(sz uint8) int {
	if sz == 2 {
		return 2
	}
	return 4
}

// parse1 decodes one-byte-opcode instructions.
func (d *decoder) parse1(b byte, p *plan) bool {
	if d.rep != 0 && !(b >= 0xA4 && b <= 0xAD) {
		return false // F2/F3 mean something else (or nothing we emulate)
	}
	sz := d.opSize()
	switch {
	case b < 0x40 && b&7 < 4:
		// ALU ops: x0 Eb,Gb; x1 Ev,Gv; x2 Gb,Eb; x3 Gv,Ev.
		p.op = b >> 3
		if b&1 == 0 {
			sz = 1
		}
		p.size, p.msize = sz, sz
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		d.gpr(p, reg, sz)
		if b&2 == 0 {
			p.kind = kALUStore
			p.read, p.write = true, p.op != aluCmp
			p.lock = p.op != aluCmp
		} else {
			p.kind = kALULoad
			p.read = true
		}
		return true
	case b == 0x80 || b == 0x81 || b == 0x83:
		if b == 0x80 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		n := immSize(sz)
		if b != 0x81 {
			n = 1
		}
		if p.imm, ok = d.imm(n); !ok {
			return false
		}
		p.kind, p.op, p.immOK = kALUStore, reg&7, true
		p.size, p.msize = sz, sz
		p.read, p.write = true, p.op != aluCmp
		p.lock = p.op != aluCmp
		return true
	case b == 0x84 || b == 0x85:
		if b == 0x84 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		d.gpr(p, reg, sz)
		p.kind, p.op, p.size, p.msize, p.read = kALUStore, aluTest, sz, sz, true
		return true
	case b == 0x86 || b == 0x87:
		if b == 0x86 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		d.gpr(p, reg, sz)
		p.kind, p.size, p.msize, p.read, p.write, p.lock = kXchg, sz, sz, true, true, true
		return true
	case b >= 0x88 && b <= 0x8B:
		if b&1 == 0 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		d.gpr(p, reg, sz)
		p.size, p.msize = sz, sz
		if b&2 == 0 {
			p.kind, p.write = kMovStore, true
		} else {
			p.kind, p.read = kMovLoad, true
		}
		return true
	case b == 0x63:
		reg, ok := d.modrm(p, 1)
		if !ok || d.opsz16 {
			return false
		}
		p.kind, p.reg, p.size, p.msize, p.read = kMovLoad, reg, sz, 4, true
		if sz == 8 {
			p.ext = extSign
		}
		return true
	case b >= 0xA0 && b <= 0xA3:
		if b&1 == 0 {
			sz = 1
		}
		n := 8
		if d.addr32 {
			n = 4
		}
		p.at.disp, p.at.dispLen = int8(d.pos), int8(n)
		v, ok := d.disp(n)
		if !ok {
			return false
		}
		if n == 4 {
			v = uint64(uint32(v))
		}
		p.mem.disp = int64(v)
		p.reg, p.size, p.msize = 0, sz, sz
		if b&2 == 0 {
			p.kind, p.read = kMovLoad, true
		} else {
			p.kind, p.write = kMovStore, true
		}
		return true
	case b == 0xA4 || b == 0xA5 || b == 0xAA || b == 0xAB || b == 0xAC || b == 0xAD:
		if d.addr32 {
			return false
		}
		if b&1 == 0 {
			sz = 1
		}
		p.size, p.msize, p.rep = sz, sz, d.rep != 0
		switch b &^ 1 {
		case 0xA4:
			p.kind, p.read, p.write = kMovs, true, true
		case 0xAA:
			p.kind, p.write = kStos, true
		case 0xAC:
			p.kind, p.read = kLods, true
		}
		return true
	case b == 0xC0 || b == 0xC1 || (b >= 0xD0 && b <= 0xD3): // shift group 2
		if b&1 == 0 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		switch reg & 7 {
		case 0, 1, 4, 5, 7: // rol, ror, shl, shr, sar (not rcl, rcr, the sal alias)
		default:
			return false
		}
		p.kind, p.op, p.size, p.msize, p.read, p.write = kShift, reg&7, sz, sz, true, true
		switch {
		case b <= 0xC1:
			if p.imm, ok = d.imm(1); !ok {
				return false
			}
			p.imm &= 0xFF
			p.immOK = true
		case b <= 0xD1:
			p.imm, p.immOK = 1, true
		}
		return true
	case b == 0x69 || b == 0x6B: // imul r, r/m, imm
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		n := immSize(sz)
		if b == 0x6B {
			n = 1
		}
		if p.imm, ok = d.imm(n); !ok {
			return false
		}
		p.kind, p.reg, p.immOK, p.size, p.msize, p.read = kImul, reg, true, sz, sz, true
		return true
	case b == 0xC6 || b == 0xC7:
		if b == 0xC6 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok || reg&7 != 0 {
			return false
		}
		n := immSize(sz)
		if sz == 1 {
			n = 1
		}
		if p.imm, ok = d.imm(n); !ok {
			return false
		}
		p.kind, p.size, p.msize, p.write = kMovStoreImm, sz, sz, true
		return true
	case b == 0xF6 || b == 0xF7:
		if b == 0xF6 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		p.size, p.msize = sz, sz
		switch reg & 7 {
		case 0: // test
			n := immSize(sz)
			if sz == 1 {
				n = 1
			}
			if p.imm, ok = d.imm(n); !ok {
				return false
			}
			p.kind, p.op, p.immOK, p.read = kALUStore, aluTest, true, true
		case 2:
			p.kind, p.op, p.read, p.write, p.lock = kUnary, unNot, true, true, true
		case 3:
			p.kind, p.op, p.read, p.write, p.lock = kUnary, unNeg, true, true, true
		default:
			return false
		}
		return true
	case b == 0xFE || b == 0xFF:
		if b == 0xFE {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok || reg&7 > 1 {
			return false
		}
		p.kind, p.op, p.size, p.msize, p.read, p.write, p.lock = kUnary, reg&7, sz, sz, true, true, true
		return true
	}
	return false
}

// parse0F decodes two- and three-byte legacy opcodes.
func (d *decoder) parse0F(p *plan) bool {
	b, ok := d.byte()
	if !ok {
		return false
	}
	sz := d.opSize()
	// Mandatory prefix for SSE: F2/F3 take precedence; both 66 and F2/F3 is
	// left to the CPU.
	var pp byte
	switch {
	case d.rep != 0 && d.opsz16:
		pp = 0xFF
	case d.rep == 0xF3:
		pp = 2
	case d.rep == 0xF2:
		pp = 3
	case d.opsz16:
		pp = 1
	}
	if d.rep != 0 && b != 0x10 && b != 0x11 && b != 0x6F && b != 0x7F && b != 0x7E {
		return false
	}
	switch {
	case b >= 0x90 && b <= 0x9F: // setcc
		if _, ok := d.modrm(p, 1); !ok {
			return false
		}
		p.kind, p.op, p.size, p.msize, p.write = kSetcc, b&15, 1, 1, true
		return true
	case b >= 0x40 && b <= 0x4F: // cmovcc
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		p.kind, p.op, p.reg, p.size, p.msize, p.read = kCmov, b&15, reg, sz, sz, true
		return true
	case b == 0xAF: // imul r, r/m
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		p.kind, p.reg, p.size, p.msize, p.read = kImul, reg, sz, sz, true
		return true
	case (b == 0x12 || b == 0x13 || b == 0x16 || b == 0x17) && pp <= 1:
		// movlps/movlpd (12 load, 13 store), movhps/movhpd (16, 17): the
		// low or high quadword of an XMM register; the rest is kept.
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		p.reg, p.msize, p.vlen, p.elem = reg, 8, 8, 8
		if b >= 0x16 {
			p.voff = 8
		}
		if b&1 == 0 {
			p.kind, p.read = kVecLoad, true
		} else {
			p.kind, p.write = kVecStore, true
		}
		return true
	}
	switch b {
	case 0xB6, 0xB7, 0xBE, 0xBF:
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		p.msize = 1 + b&1
		d.gpr(p, reg, sz)
		p.kind, p.size, p.read = kMovLoad, sz, true
		p.ext = extZero
		if b >= 0xBE {
			p.ext = extSign
		}
		return true
	case 0xB0, 0xB1, 0xC0, 0xC1:
		if b&1 == 0 {
			sz = 1
		}
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		d.gpr(p, reg, sz)
		p.kind = kCmpxchg
		if b >= 0xC0 {
			p.kind = kXadd
		}
		p.size, p.msize, p.read, p.write, p.lock = sz, sz, true, true, true
		return true
	case 0xA3, 0xAB, 0xB3, 0xBB:
		reg, ok := d.modrm(p, 1)
		if !ok {
			return false
		}
		p.reg = reg
		p.kind, p.size, p.msize, p.read = kBT, sz, sz, true
		p.op = (b >> 3) & 3 // A3 bt, AB bts, B3 btr, BB btc
		p.write, p.lock = p.op != btBT, p.op != btBT
		return true
	case 0xBA:
		reg, ok := d.modrm(p, 1)
		if !ok || reg&7 < 4 {
			return false
		}
		if p.imm, ok = d.imm(1); !ok {
			return false
		}
		p.imm &= 0xFF
		p.kind, p.op, p.immOK, p.size, p.msize, p.read = kBT, reg&3, true, sz, sz, true
		p.write, p.lock = p.op != btBT, p.op != btBT
		return true
	case 0xC3: // movnti
		reg, ok := d.modrm(p, 1)
		if !ok || d.opsz16 {
			return false
		}
		p.kind, p.reg, p.size, p.msize, p.write = kMovStore, reg, sz, sz, true
		return true
	case 0x38:
		b, ok = d.byte()
		if !ok {
			return false
		}
		switch {
		case b == 0xF0 || b == 0xF1: // movbe
			reg, ok := d.modrm(p, 1)
			if !ok {
				return false
			}
			p.reg, p.size, p.msize = reg, sz, sz
			if b == 0xF0 {
				p.kind, p.read = kMovbeLoad, true
			} else {
				p.kind, p.write = kMovbeStore, true
			}
			return true
		case b == 0x2A && pp == 1: // movntdqa
			return d.sseMove(p, true, 16, 16, true)
		}
		return false
	}
	// SSE moves. Without 66/F2/F3 the 6E/6F/7E/7F/D6 opcodes are MMX (not
	// emulated).
	switch {
	case (b == 0x10 || b == 0x11) && pp <= 1: // movups, movupd
		return d.sseMove(p, b == 0x10, 16, 16, false)
	case (b == 0x10 || b == 0x11) && pp == 2: // movss
		return d.sseMove(p, b == 0x10, 4, 16, false)
	case (b == 0x10 || b == 0x11) && pp == 3: // movsd
		return d.sseMove(p, b == 0x10, 8, 16, false)
	case (b == 0x28 || b == 0x29) && pp <= 1: // movaps, movapd
		return d.sseMove(p, b == 0x28, 16, 16, true)
	case b == 0x2B && pp <= 1: // movntps, movntpd
		return d.sseMove(p, false, 16, 16, true)
	case (b == 0x6E || b == 0x7E) && pp == 1: // movd/movq xmm <-> r/m
		n := uint8(4)
		if d.rex&8 != 0 {
			n = 8
		}
		return d.sseMove(p, b == 0x6E, n, 16, false)
	case b == 0x7E && pp == 2: // movq xmm, m64
		return d.sseMove(p, true, 8, 16, false)
	case b == 0xD6 && pp == 1: // movq m64, xmm
		return d.sseMove(p, false, 8, 16, false)
	case (b == 0x6F || b == 0x7F) && pp == 1: // movdqa
		return d.sseMove(p, b == 0x6F, 16, 16, true)
	case (b == 0x6F || b == 0x7F) && pp == 2: // movdqu
		return d.sseMove(p, b == 0x6F, 16, 16, false)
	case b == 0xE7 && pp == 1: // movntdq
		return d.sseMove(p, false, 16, 16, true)
	}
	return false
}

// sseMove fills p for a legacy-SSE move between an XMM register and memory.
// A load writes n bytes and zeroes the register up to clear bytes; legacy
// SSE never touches bits above 128.
func (d *decoder) sseMove(p *plan, load bool, n, clear uint8, align bool) bool {
	reg, ok := d.modrm(p, 1)
	if !ok {
		return false
	}
	p.reg, p.msize, p.vlen, p.clear, p.elem, p.align = reg, n, n, clear, n, align
	if load {
		p.kind, p.read = kVecLoad, true
	} else {
		p.kind, p.write = kVecStore, true
	}
	return true
}

// parseVEX decodes the VEX- and EVEX-encoded moves.
func (d *decoder) parseVEX(b byte, p *plan) bool {
	d.vex = 0xC4
	switch b {
	case 0xC5:
		b1, ok := d.byte()
		if !ok {
			return false
		}
		d.vR = (^b1 >> 7 & 1) << 3
		d.vvvv = ^b1 >> 3 & 15
		d.vL = 16 << (b1 >> 2 & 1)
		d.vpp = b1 & 3
		d.vmap = 1
	case 0xC4:
		b1, ok := d.byte()
		if !ok {
			return false
		}
		b2, ok := d.byte()
		if !ok {
			return false
		}
		d.vR = (^b1 >> 7 & 1) << 3
		d.vX = (^b1 >> 6 & 1) << 3
		d.vB = (^b1 >> 5 & 1) << 3
		d.vmap = b1 & 31
		d.vW = b2&0x80 != 0
		d.vvvv = ^b2 >> 3 & 15
		d.vL = 16 << (b2 >> 2 & 1)
		d.vpp = b2 & 3
	case 0x62:
		d.vex = 0x62
		var pb [3]byte
		for i := range pb {
			v, ok := d.byte()
			if !ok {
				return false
			}
			pb[i] = v
		}
		if pb[0]&0x0C != 0 || pb[1]&0x04 == 0 {
			return false // reserved bits (APX extensions are not handled)
		}
		d.vR = (^pb[0]>>7&1)<<3 | (^pb[0]>>4&1)<<4
		d.vX = (^pb[0] >> 6 & 1) << 3
		d.vB = (^pb[0] >> 5 & 1) << 3
		d.vmap = pb[0] & 3
		d.vW = pb[1]&0x80 != 0
		d.vvvv = ^pb[1] >> 3 & 15
		d.vpp = pb[1] & 3
		d.z = pb[2]&0x80 != 0
		ll := pb[2] >> 5 & 3
		if ll == 3 {
			return false
		}
		d.vL = 16 << ll
		d.bcast = pb[2]&0x10 != 0
		d.vVp = pb[2]&0x08 != 0
		d.aaa = pb[2] & 7
	}
	p.at.opcode = int8(d.pos)
	op, ok := d.byte()
	if !ok {
		return false
	}
	// None of the moves has a second source: VEX.vvvv must be 1111 (and
	// EVEX.V' 1), else #UD.
	if d.vvvv != 0 || (d.vex == 0x62 && !d.vVp) {
		return false
	}
	if d.vex == 0x62 {
		return d.evexMove(op, p)
	}
	L, pp := d.vL, d.vpp
	switch d.vmap {
	case 1:
		switch {
		case (op == 0x10 || op == 0x11) && pp <= 1: // vmovups, vmovupd
			return d.vexMove(p, op == 0x10, L, false)
		case (op == 0x10 || op == 0x11) && pp == 2 && L == 16:
			// vmovss. The CPU ignores L, but x86asm rejects L=1; such
			// encodings (no assembler emits them) are left to the CPU.
			return d.vexMove(p, op == 0x10, 4, false)
		case (op == 0x10 || op == 0x11) && pp == 3 && L == 16: // vmovsd, as vmovss
			return d.vexMove(p, op == 0x10, 8, false)
		case (op == 0x28 || op == 0x29) && pp <= 1: // vmovaps, vmovapd
			return d.vexMove(p, op == 0x28, L, true)
		case op == 0x2B && pp <= 1: // vmovntps, vmovntpd
			return d.vexMove(p, false, L, true)
		case (op == 0x6E || op == 0x7E) && pp == 1 && L == 16: // vmovd, vmovq
			n := uint8(4)
			if d.vW {
				n = 8
			}
			return d.vexMove(p, op == 0x6E, n, false)
		case op == 0x7E && pp == 2 && L == 16: // vmovq xmm, m64
			return d.vexMove(p, true, 8, false)
		case op == 0xD6 && pp == 1 && L == 16: // vmovq m64, xmm
			return d.vexMove(p, false, 8, false)
		case (op == 0x6F || op == 0x7F) && pp == 1: // vmovdqa
			return d.vexMove(p, op == 0x6F, L, true)
		case (op == 0x6F || op == 0x7F) && pp == 2: // vmovdqu
			return d.vexMove(p, op == 0x6F, L, false)
		case op == 0xE7 && pp == 1: // vmovntdq
			return d.vexMove(p, false, L, true)
		}
	case 2:
		if op == 0x2A && pp == 1 && !d.vW { // vmovntdqa
			return d.vexMove(p, true, L, true)
		}
	}
	return false
}

// vexMove fills p for a VEX move: a load zeroes the destination above n
// bytes, up to the full 512 bits.
func (d *decoder) vexMove(p *plan, load bool, n uint8, align bool) bool {
	reg, ok := d.modrm(p, 1)
	if !ok {
		return false
	}
	p.reg, p.msize, p.vlen, p.clear, p.elem, p.align = reg, n, n, 64, n, align
	if load {
		p.kind, p.read = kVecLoad, true
	} else {
		p.kind, p.write = kVecStore, true
	}
	return true
}

// evexMove decodes the EVEX full-vector moves, with opmask and zeroing.
func (d *decoder) evexMove(op byte, p *plan) bool {
	if d.bcast || d.vmap != 1 {
		return false
	}
	var elem uint8
	var load, align bool
	switch op {
	case 0x10, 0x11, 0x28, 0x29: // vmovups/vmovupd, vmovaps/vmovapd
		switch {
		case d.vpp == 0 && !d.vW:
			elem = 4
		case d.vpp == 1 && d.vW:
			elem = 8
		default:
			return false // vmovss/vmovsd and invalid W
		}
		load, align = op&1 == 0, op >= 0x28
	case 0x6F, 0x7F:
		switch d.vpp {
		case 1: // vmovdqa32/64
			elem, align = 4, true
		case 2: // vmovdqu32/64
			elem = 4
		case 3: // vmovdqu8/16
			elem = 1
		default:
			return false
		}
		if d.vW {
			elem *= 2
		}
		load = op == 0x6F
	default:
		return false
	}
	if d.z && (!load || d.aaa == 0) {
		return false // zeroing with a memory destination is #UD
	}
	reg, ok := d.modrm(p, int64(d.vL))
	if !ok {
		return false
	}
	p.reg, p.msize, p.vlen, p.clear, p.elem, p.align = reg, d.vL, d.vL, 64, elem, align
	p.kreg, p.zero = d.aaa, d.z
	if load {
		p.kind, p.read = kVecLoad, true
	} else {
		p.kind, p.write = kVecStore, true
	}
	return true
}
