package x86

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// Memory performs the tracee's data accesses for Emulate.
type Memory interface {
	// Load reads len(b) bytes at addr. len(b) is the access width (1, 2,
	// 4, 8, 16, 32 or 64) and the implementation must perform it as one
	// access of that width.
	Load(addr uint64, b []byte) error
	// Store writes b at addr as one access of width len(b).
	Store(addr uint64, b []byte) error
	// CompareAndSwap atomically replaces old with new at addr, where
	// len(old) == len(new) is 1, 2, 4 or 8, and reports whether it did.
	// Emulate uses it for locked read-modify-write instructions (and xchg):
	// it loads, computes, swaps, and starts over when the swap fails.
	CompareAndSwap(addr uint64, old, new []byte) (bool, error)
}

// RFLAGS bits.
const (
	flagCF = 1 << 0
	flagPF = 1 << 2
	flagAF = 1 << 4
	flagZF = 1 << 6
	flagSF = 1 << 7
	flagDF = 1 << 10
	flagOF = 1 << 11

	// arithFlags are the six status flags that arithmetic defines.
	arithFlags = flagCF | flagPF | flagAF | flagZF | flagSF | flagOF
)

// maxCASRetries bounds the load/compute/swap loop of a locked instruction,
// so that a location another agent rewrites without pause cannot hang the
// tracer. Hitting it is reported as an error, with no effect on r.
const maxCASRetries = 1 << 20

// errCASLimit reports that a locked instruction could not complete.
var errCASLimit = errors.New("x86: compare-and-swap retry limit reached")

// errNoVec reports a vector instruction emulated without VecRegs.
var errNoVec = errors.New("x86: vector instruction emulated without vector registers")

// scratch holds the bytes of the accesses of one Emulate call. It comes
// from a pool rather than the stack because slices passed to an interface
// method escape, and Emulate must not allocate.
type scratch struct {
	a, b [64]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Emulate executes in against the registers r and v and the memory mem.
//
// If the instruction is not emulated it returns ErrUnsupported with no side
// effect. On success every architectural effect is applied and r.Rip has
// advanced by in.Len. If a Memory call fails Emulate returns its error and
// leaves r and v unchanged, with two exceptions that mirror how the CPU
// itself reports a fault in the middle of an instruction: a rep string
// instruction leaves RCX, RSI and RDI describing the elements already done
// (RIP still at the instruction, so re-executing it completes the work), and
// a masked vector store may have stored some of its elements.
//
// v is only used, and may be nil, when in.NeedsVec() is false.
func Emulate(in *Inst, r *Regs, v *VecRegs, mem Memory) error {
	p := &in.p
	if p.kind == kNone {
		return ErrUnsupported
	}
	if in.NeedsVec() && v == nil {
		return errNoVec
	}
	s := scratchPool.Get().(*scratch)
	err := emulate(in, p, r, v, mem, s)
	scratchPool.Put(s)
	if err != nil {
		return err
	}
	r.Rip += uint64(in.Len)
	return nil
}

// ea computes the effective (linear) address of the memory operand.
func (m *memRef) ea(r *Regs, next uint64) uint64 {
	var a uint64
	switch {
	case m.rip:
		a = next
	case m.base >= 0:
		a = *gpr(r, uint8(m.base))
	}
	if m.index >= 0 {
		a += *gpr(r, uint8(m.index)) << m.scale
	}
	a += uint64(m.disp)
	if m.addr32 {
		a = uint64(uint32(a))
	}
	return a + segBase(r, m.seg)
}

func segBase(r *Regs, seg uint8) uint64 {
	switch seg {
	case segFS:
		return r.Fs_base
	case segGS:
		return r.Gs_base
	}
	return 0
}

func emulate(in *Inst, p *plan, r *Regs, v *VecRegs, mem Memory, s *scratch) error {
	next := r.Rip + uint64(in.Len)
	size := int(p.size)
	switch p.kind {
	case kMovs, kStos, kLods:
		return emulateString(p, r, mem, s)
	case kVecLoad:
		return vecLoad(p, p.mem.ea(r, next), v, mem, s)
	case kVecStore:
		return vecStore(p, p.mem.ea(r, next), v, mem, s)
	}
	addr := p.mem.ea(r, next)
	msize := int(p.msize)
	buf := s.a[:msize]

	switch p.kind {
	case kMovLoad:
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		val := getLE(buf)
		if p.ext == extSign {
			val = signExtend(val, msize)
		}
		setGPR(r, p.reg, p.hi, size, val)
	case kMovStore:
		putLE(buf, getGPR(r, p.reg, p.hi, size))
		return mem.Store(addr, buf)
	case kMovStoreImm:
		putLE(buf, p.imm)
		return mem.Store(addr, buf)
	case kMovbeLoad:
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		setGPR(r, p.reg, false, size, bswap(getLE(buf), size))
	case kMovbeStore:
		putLE(buf, bswap(getGPR(r, p.reg, false, size), size))
		return mem.Store(addr, buf)
	case kALULoad:
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		a := getGPR(r, p.reg, p.hi, size)
		res, fl := alu(p.op, a, getLE(buf), size, r.Eflags&flagCF != 0)
		if p.op != aluCmp {
			setGPR(r, p.reg, p.hi, size, res)
		}
		r.Eflags = r.Eflags&^arithFlags | fl
	case kALUStore:
		src := p.imm
		if !p.immOK {
			src = getGPR(r, p.reg, p.hi, size)
		}
		cf := r.Eflags&flagCF != 0
		var fl uint64
		err := rmw(p, addr, mem, s, func(old uint64) (uint64, bool) {
			var res uint64
			res, fl = alu(p.op, old, src, size, cf)
			return res, p.op != aluCmp && p.op != aluTest
		})
		if err != nil {
			return err
		}
		r.Eflags = r.Eflags&^arithFlags | fl
	case kUnary:
		fl := r.Eflags
		err := rmw(p, addr, mem, s, func(old uint64) (uint64, bool) {
			var res uint64
			res, fl = unary(p.op, old, size, r.Eflags)
			return res, true
		})
		if err != nil {
			return err
		}
		r.Eflags = fl
	case kXchg:
		src := getGPR(r, p.reg, p.hi, size)
		var old uint64
		err := rmw(p, addr, mem, s, func(o uint64) (uint64, bool) {
			old = o
			return src, true
		})
		if err != nil {
			return err
		}
		setGPR(r, p.reg, p.hi, size, old)
	case kXadd:
		src := getGPR(r, p.reg, p.hi, size)
		var old, fl uint64
		err := rmw(p, addr, mem, s, func(o uint64) (uint64, bool) {
			var res uint64
			old = o
			res, fl = alu(aluAdd, o, src, size, false)
			return res, true
		})
		if err != nil {
			return err
		}
		setGPR(r, p.reg, p.hi, size, old)
		r.Eflags = r.Eflags&^arithFlags | fl
	case kCmpxchg:
		acc := getGPR(r, 0, false, size)
		src := getGPR(r, p.reg, p.hi, size)
		var old, fl uint64
		// On failure the CPU writes the old value back: the destination
		// always sees a (locked) write.
		err := rmw(p, addr, mem, s, func(o uint64) (uint64, bool) {
			old = o
			_, fl = alu(aluCmp, acc, o, size, false)
			if fl&flagZF != 0 {
				return src, true
			}
			return o, true
		})
		if err != nil {
			return err
		}
		if fl&flagZF == 0 {
			setGPR(r, 0, false, size, old)
		}
		r.Eflags = r.Eflags&^arithFlags | fl
	case kBT:
		bitsz := uint64(size * 8)
		var bit uint64
		if p.immOK {
			bit = p.imm & (bitsz - 1)
		} else {
			off := int64(signExtend(getGPR(r, p.reg, false, size), size))
			// The operand is the size-aligned unit containing the bit,
			// relative to the effective address (signed offset).
			addr += uint64((off >> bits.TrailingZeros64(bitsz)) * int64(size))
			bit = uint64(off) & (bitsz - 1)
		}
		var cf bool
		err := rmw(p, addr, mem, s, func(o uint64) (uint64, bool) {
			cf = o>>bit&1 != 0
			switch p.op {
			case btBTS:
				return o | 1<<bit, true
			case btBTR:
				return o &^ (1 << bit), true
			case btBTC:
				return o ^ 1<<bit, true
			}
			return o, false
		})
		if err != nil {
			return err
		}
		r.Eflags &^= flagCF
		if cf {
			r.Eflags |= flagCF
		}
	case kSetcc:
		if cond(p.op, r.Eflags) {
			buf[0] = 1
		} else {
			buf[0] = 0
		}
		return mem.Store(addr, buf)
	case kCmov:
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		// A 32-bit cmov zeroes the upper half even when it does not move.
		if cond(p.op, r.Eflags) {
			setGPR(r, p.reg, false, size, getLE(buf))
		} else {
			setGPR(r, p.reg, false, size, getGPR(r, p.reg, false, size))
		}
	case kShift:
		c := shiftCount(p, r)
		if c == 0 || (p.op >= 4 && c >= size*8) {
			// A zero count changes nothing, and whether the CPU still
			// writes the operand is not architectural; counts past the
			// width of a byte or word operand leave CF undefined. Both are
			// left to the CPU.
			return ErrUnsupported
		}
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		res, fl := shift(p.op, getLE(buf), c, size, r.Eflags)
		putLE(buf, res)
		if err := mem.Store(addr, buf); err != nil {
			return err
		}
		r.Eflags = fl
	case kImul:
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		a := getLE(buf)
		b := getGPR(r, p.reg, false, size)
		if p.immOK {
			b = p.imm
		}
		res, fl := imul(a, b, size)
		setGPR(r, p.reg, false, size, res)
		r.Eflags = r.Eflags&^arithFlags | fl
	default:
		return ErrUnsupported
	}
	return nil
}

// shiftCount is the masked count of a shift or rotate.
func shiftCount(p *plan, r *Regs) int {
	c := r.Rcx & 0xFF
	if p.immOK {
		c = p.imm
	}
	if p.size == 8 {
		return int(c & 63)
	}
	return int(c & 31)
}

// shift computes rol, ror, shl, shr or sar by a nonzero count c (below the
// operand width for shifts) and returns the result and the new RFLAGS.
// Rotates change only CF and OF; shifts set CF, OF, SF, ZF, PF and clear
// AF (undefined). OF, defined for c == 1 only, is computed by the c == 1
// rule for every count.
func shift(op uint8, a uint64, c, size int, rflags uint64) (res, fl uint64) {
	n := size * 8
	m := sizeMask(size)
	a &= m
	msb := func(v uint64) uint64 { return v >> (n - 1) & 1 }
	var cf, of uint64
	switch op {
	case 0, 1: // rol, ror
		rc := c % n
		if op == 0 {
			res = (a<<rc | a>>((n-rc)%n)) & m
			cf = res & 1
			of = msb(res) ^ cf
		} else {
			res = (a>>rc | a<<((n-rc)%n)) & m
			cf = msb(res)
			of = msb(res) ^ res>>(n-2)&1
		}
		fl = rflags &^ (flagCF | flagOF)
		return res, fl | cf*flagCF | of*flagOF
	case 4: // shl
		res = a << c & m
		cf = a >> (n - c) & 1
		of = msb(res) ^ cf
	case 5: // shr
		res = a >> c
		cf = a >> (c - 1) & 1
		of = msb(a)
	case 7: // sar
		sa := int64(signExtend(a, size))
		res = uint64(sa>>c) & m
		cf = uint64(sa>>(c-1)) & 1
	}
	fl = rflags&^arithFlags | cf*flagCF | of*flagOF | szp(res, size)
	return res, fl
}

// cond evaluates condition code cc (the low nibble of Jcc, SETcc, CMOVcc).
func cond(cc uint8, fl uint64) bool {
	cf, zf, sf, of, pf := fl&flagCF != 0, fl&flagZF != 0, fl&flagSF != 0, fl&flagOF != 0, fl&flagPF != 0
	var c bool
	switch cc >> 1 {
	case 0:
		c = of
	case 1:
		c = cf
	case 2:
		c = zf
	case 3:
		c = cf || zf
	case 4:
		c = sf
	case 5:
		c = pf
	case 6:
		c = sf != of
	case 7:
		c = zf || sf != of
	}
	return c != (cc&1 != 0)
}

// imul multiplies signed size-byte operands and returns the truncated
// product and flags: CF and OF report that it did not fit; SF, ZF and PF
// (undefined) follow the result and AF is cleared.
func imul(a, b uint64, size int) (res, fl uint64) {
	sa, sb := int64(signExtend(a, size)), int64(signExtend(b, size))
	var overflow bool
	if size == 8 {
		hi, lo := bits.Mul64(uint64(sa), uint64(sb))
		if sa < 0 {
			hi -= uint64(sb)
		}
		if sb < 0 {
			hi -= uint64(sa)
		}
		res = lo
		overflow = hi != uint64(int64(lo)>>63)
	} else {
		full := sa * sb
		res = uint64(full) & sizeMask(size)
		overflow = int64(signExtend(res, size)) != full
	}
	if overflow {
		fl = flagCF | flagOF
	}
	return res, fl | szp(res, size)
}

// rmw performs a read-modify-write of p.msize bytes at addr. f maps the old
// value to the new one and reports whether to write it. Locked instructions
// use CompareAndSwap and retry; others load and store. f may run several
// times and must only record the outcome of its last run.
func rmw(p *plan, addr uint64, mem Memory, s *scratch, f func(old uint64) (uint64, bool)) error {
	n := int(p.msize)
	oldb, newb := s.a[:n], s.b[:n]
	for try := 0; try < maxCASRetries; try++ {
		if err := mem.Load(addr, oldb); err != nil {
			return err
		}
		res, write := f(getLE(oldb))
		if !write {
			return nil
		}
		putLE(newb, res)
		if !p.lock {
			return mem.Store(addr, newb)
		}
		ok, err := mem.CompareAndSwap(addr, oldb, newb)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("x86: locked access at %#x: %w", addr, errCASLimit)
}

// emulateString runs movs, stos or lods, with or without rep, one Memory
// access (or load and store for movs) per element.
func emulateString(p *plan, r *Regs, mem Memory, s *scratch) error {
	size := int(p.size)
	step := uint64(size)
	if r.Eflags&flagDF != 0 {
		step = -step
	}
	buf := s.a[:size]
	srcSeg := segBase(r, p.mem.seg)
	rcx, rsi, rdi := r.Rcx, r.Rsi, r.Rdi
	n := uint64(1)
	if p.rep {
		n = rcx
	}
	var err error
	for ; n > 0; n-- {
		switch p.kind {
		case kMovs:
			if err = mem.Load(srcSeg+rsi, buf); err == nil {
				err = mem.Store(rdi, buf)
			}
		case kStos:
			putLE(buf, r.Rax)
			err = mem.Store(rdi, buf)
		case kLods:
			if err = mem.Load(srcSeg+rsi, buf); err == nil {
				setGPR(r, 0, false, size, getLE(buf))
			}
		}
		if err != nil {
			break
		}
		if p.kind != kStos {
			rsi += step
		}
		if p.kind != kLods {
			rdi += step
		}
		if p.rep {
			rcx--
		}
	}
	// On error RIP stays at the instruction (Emulate only advances it on
	// success) and the registers describe the elements done, as after a
	// fault in the middle of a rep instruction on the CPU.
	r.Rcx, r.Rsi, r.Rdi = rcx, rsi, rdi
	return err
}

// vecLoad loads a vector register from memory, with optional merge- or
// zero-masking. The register is only written once every access succeeded.
func vecLoad(p *plan, addr uint64, v *VecRegs, mem Memory, s *scratch) error {
	n := int(p.msize)
	if p.align && addr%uint64(n) != 0 {
		return ErrUnsupported // #GP: let the CPU raise it
	}
	dst := &v.Z[p.reg&31]
	buf := s.a[:n]
	if p.kreg == 0 {
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
		end := int(p.voff) + n
		copy(dst[p.voff:end], buf)
		if int(p.clear) > end {
			clear(dst[end:p.clear])
		}
		return nil
	}
	e := int(p.elem)
	nelem := n / e
	mask := v.K[p.kreg&7] & lowMask(nelem)
	if mask == lowMask(nelem) {
		if err := mem.Load(addr, buf); err != nil {
			return err
		}
	} else {
		// Masked-off elements are not accessed (and cannot fault).
		for i := 0; i < nelem; i++ {
			if mask>>i&1 != 0 {
				if err := mem.Load(addr+uint64(i*e), buf[i*e:(i+1)*e]); err != nil {
					return err
				}
			}
		}
	}
	for i := 0; i < nelem; i++ {
		el := dst[i*e : (i+1)*e]
		switch {
		case mask>>i&1 != 0:
			copy(el, buf[i*e:])
		case p.zero:
			clear(el)
		}
	}
	clear(dst[n:p.clear])
	return nil
}

// vecStore stores a vector register; a masked store writes only the
// selected elements, each as one access of the element's width.
func vecStore(p *plan, addr uint64, v *VecRegs, mem Memory, s *scratch) error {
	n := int(p.msize)
	if p.align && addr%uint64(n) != 0 {
		return ErrUnsupported // #GP: let the CPU raise it
	}
	buf := s.a[:n]
	copy(buf, v.Z[p.reg&31][p.voff:])
	if p.kreg == 0 {
		return mem.Store(addr, buf)
	}
	e := int(p.elem)
	nelem := n / e
	mask := v.K[p.kreg&7] & lowMask(nelem)
	if mask == lowMask(nelem) {
		return mem.Store(addr, buf)
	}
	for i := 0; i < nelem; i++ {
		if mask>>i&1 != 0 {
			if err := mem.Store(addr+uint64(i*e), buf[i*e:(i+1)*e]); err != nil {
				return err
			}
		}
	}
	return nil
}

func lowMask(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// alu computes a op b on size-byte operands and returns the result and the
// six arithmetic flags as the CPU sets them (AF and the others that logic
// operations leave undefined are cleared, as current CPUs do).
func alu(op uint8, a, b uint64, size int, cf bool) (res, fl uint64) {
	m := sizeMask(size)
	a, b = a&m, b&m
	var carry uint64
	switch op {
	case aluAdd, aluAdc:
		var cin uint64
		if op == aluAdc && cf {
			cin = 1
		}
		if size == 8 {
			res, carry = bits.Add64(a, b, cin)
		} else {
			res = a + b + cin
			carry = res >> (size * 8) & 1
			res &= m
		}
		fl = carry * flagCF
		fl |= ((a ^ res) & (b ^ res) >> (size*8 - 1) & 1) * flagOF
		fl |= (a ^ b ^ res) & flagAF
	case aluSub, aluSbb, aluCmp:
		var bin uint64
		if op == aluSbb && cf {
			bin = 1
		}
		if size == 8 {
			res, carry = bits.Sub64(a, b, bin)
		} else {
			res = (a - b - bin) & m
			if a < b+bin {
				carry = 1
			}
		}
		fl = carry * flagCF
		fl |= ((a ^ b) & (a ^ res) >> (size*8 - 1) & 1) * flagOF
		fl |= (a ^ b ^ res) & flagAF
	case aluAnd, aluTest:
		res = a & b
	case aluOr:
		res = a | b
	case aluXor:
		res = a ^ b
	}
	return res, fl | szp(res, size)
}

// unary computes inc, dec, not or neg and returns the result and the new
// RFLAGS value.
func unary(op uint8, a uint64, size int, rflags uint64) (res, newflags uint64) {
	switch op {
	case unInc, unDec:
		aop := uint8(aluAdd)
		if op == unDec {
			aop = aluSub
		}
		var fl uint64
		res, fl = alu(aop, a, 1, size, false)
		// inc and dec leave CF alone.
		return res, rflags&^(arithFlags&^flagCF) | fl&^flagCF
	case unNot:
		return ^a & sizeMask(size), rflags
	default: // unNeg
		var fl uint64
		res, fl = alu(aluSub, 0, a, size, false)
		return res, rflags&^arithFlags | fl
	}
}

// szp returns SF, ZF and PF for a result.
func szp(res uint64, size int) uint64 {
	var fl uint64
	fl |= (res >> (size*8 - 1) & 1) * flagSF
	if res == 0 {
		fl |= flagZF
	}
	if bits.OnesCount8(uint8(res))%2 == 0 {
		fl |= flagPF
	}
	return fl
}

func sizeMask(size int) uint64 {
	if size >= 8 {
		return ^uint64(0)
	}
	return 1<<(size*8) - 1
}

func signExtend(v uint64, size int) uint64 {
	sh := 64 - size*8
	return uint64(int64(v<<sh) >> sh)
}

func bswap(v uint64, size int) uint64 {
	switch size {
	case 2:
		return uint64(bits.ReverseBytes16(uint16(v)))
	case 4:
		return uint64(bits.ReverseBytes32(uint32(v)))
	}
	return bits.ReverseBytes64(v)
}

// getLE reads a little-endian value of len(b) (1, 2, 4 or 8) bytes.
func getLE(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	case 8:
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// putLE writes the low len(b) (1, 2, 4 or 8) bytes of v.
func putLE(b []byte, v uint64) {
	switch len(b) {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(b, v)
	}
}

// gpr returns the 64-bit register numbered n in the encoding's order.
func gpr(r *Regs, n uint8) *uint64 {
	switch n & 15 {
	case 0:
		return &r.Rax
	case 1:
		return &r.Rcx
	case 2:
		return &r.Rdx
	case 3:
		return &r.Rbx
	case 4:
		return &r.Rsp
	case 5:
		return &r.Rbp
	case 6:
		return &r.Rsi
	case 7:
		return &r.Rdi
	case 8:
		return &r.R8
	case 9:
		return &r.R9
	case 10:
		return &r.R10
	case 11:
		return &r.R11
	case 12:
		return &r.R12
	case 13:
		return &r.R13
	case 14:
		return &r.R14
	}
	return &r.R15
}

// getGPR reads a size-byte register operand; hi selects AH, CH, DH or BH.
func getGPR(r *Regs, n uint8, hi bool, size int) uint64 {
	v := *gpr(r, n)
	if hi {
		return v >> 8 & 0xFF
	}
	return v & sizeMask(size)
}

// setGPR writes a size-byte register operand: 32-bit writes zero the upper
// half, 8- and 16-bit writes leave the rest of the register alone.
func setGPR(r *Regs, n uint8, hi bool, size int, val uint64) {
	g := gpr(r, n)
	switch {
	case hi:
		*g = *g&^0xFF00 | (val&0xFF)<<8
	case size == 4:
		*g = val & 0xFFFFFFFF
	case size == 8:
		*g = val
	default:
		m := sizeMask(size)
		*g = *g&^m | val&m
	}
}
