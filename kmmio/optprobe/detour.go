package optprobe

import (
	"github.com/mmiotrace/mmiotrace/internal/x86/asm"

	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"

	"github.com/mmiotrace/mmiotrace/internal/x86"
)

// RedZone is the part of the stack below RSP that the System V ABI lets
// leaf functions use without moving RSP: a detour moves RSP past it before
// it stores anything.
const RedZone = 128

// Identity blocks: the detour tells threads apart by the block its GS base
// points to, {tid uint32, IdentityMagic uint32}, which the tracer gives
// every thread (x86-64 Linux programs leave GS to the tracer: neither the C
// library nor Go uses it). A thread whose GS does not lead to a block takes
// the slow path, where the tracer, which knows the thread, writes the
// record itself.
const (
	IdentitySize  = 16
	IdentityMagic = 0x4B4D4D49
)

// Target is the traced range a detour performs accesses for.
type Target struct {
	Lo, Hi uint64 // the traced range in the program, [Lo, Hi)
	// Alias is where the program has the range's first byte mapped a
	// second time, accessible, with the same object behind it.
	Alias uint64
	// Read and Write say which accesses the program's protection allows
	// there; a detour for an access it does not allow is refused.
	Read, Write bool
}

// Spec is what a detour is built from: a window, and which of its
// instructions are probed (each performing its access for its target).
type Spec struct {
	Window Window
	Probes []Probe // in window order
	Ring   uint64  // the ring's address in the program
	// RingSlots is the ring's number of slots (a power of two); 0 means
	// RingSlots.
	RingSlots int
}

// Probe says that instruction Index of the window is probed, for Target.
type Probe struct {
	Index  int
	Target Target
}

// Detour is the generated code of an optimized probe's window and what
// the tracer needs to know about it. It holds, in window order, a block
// for each probed instruction and a relocated copy of each other
// instruction, then a jump back to the end of the window.
type Detour struct {
	At   uint64
	Code []byte
	// Exact maps the detour addresses where a thread's registers and stack
	// are the program's own to the program address they stand for: each
	// block's first instruction, each relocated instruction (and the copy
	// of a probed instruction that runs when its access is not to its
	// target), and the final jump back. Anywhere else a thread is in the
	// middle of a block's instrumentation (PlaceAt).
	Exact map[uint64]uint64
	// Entry maps each instruction of the window to where the detour does
	// it: its block, or its relocated copy.
	Entry map[uint64]uint64
	// Blocks are the probed instructions' blocks, in window order.
	Blocks []Block
	// Slow paths, one per record of each block.
	Slow []Slow

	places []mark // by address: the Place from each on
}

// Block is the code that performs one probed instruction.
type Block struct {
	PC    uint64 // the instruction in the program
	Start uint64 // the block's first instruction
	// Next is where a thread continues once the access and its records
	// are done: after the block.
	Next  uint64
	Frame Frame
}

// mark is where a Place begins.
type mark struct {
	addr uint64
	p    Place
}

// Phases of a thread in a block's instrumentation (Place.Phase).
const (
	// PhaseBefore: the access has not happened. The thread can go back to
	// Restart, with the program's registers, and do it again. (Also the
	// middle of a relocated call: it has only stored below RSP.)
	PhaseBefore = iota + 1
	// PhaseAccess: in the middle of the access (a load, an operation and
	// a store) or of saving its values: step to its end.
	PhaseAccess
	// PhaseAfter: the access has happened; the records from Records on
	// are still to be written, then the thread continues at the block's
	// Next.
	PhaseAfter
)

// Where the program's flags are at a place (Place.Flags).
const (
	FlagsLive  = iota // in the thread's RFLAGS
	FlagsEntry        // in the frame at Frame.Flags
	FlagsAfter        // in the frame at Frame.FlagsAfter
)

// Place is the state of a thread at an address of a block's
// instrumentation: enough for the tracer to finish the block's work for
// it without running it (PhaseBefore: undo; PhaseAfter: write the pending
// records and move on), which is how a thread is taken out of a detour for
// a signal, or before the detour goes away.
type Place struct {
	Block int // index in Detour.Blocks; -1 in a relocated call
	Phase int
	// Restart is where a thread in PhaseBefore goes back to (the block's
	// start, or a relocated call's).
	Restart uint64
	RSP     int64  // the program's RSP is the thread's plus RSP
	Flags   int    // FlagsLive, FlagsEntry or FlagsAfter
	Saved   uint16 // registers (bit n: register n) whose program values are in Frame.Saved
	// Records is how many of the block's records are written (in the ring,
	// or by the slow path).
	Records int
	// Ticket: the ring's ticket for record Records is taken (RAX holds it,
	// R11 the slot's address) and not committed yet. CAS: the thread is
	// right after the compare-and-swap that takes it: taken if ZF is set.
	Ticket, CAS bool
	TSC         bool // the frame's counter reading is there
}

// PlaceAt returns the place of addr, a detour address that is not exact
// (ok false for exact places and addresses outside the detour).
func (d *Detour) PlaceAt(addr uint64) (Place, bool) {
	if !d.Contains(addr) {
		return Place{}, false
	}
	if _, exact := d.Exact[addr]; exact {
		return Place{}, false
	}
	i := sort.Search(len(d.places), func(i int) bool { return d.places[i].addr > addr })
	if i == 0 {
		return Place{}, false
	}
	return d.places[i-1].p, true
}

// Slow describes one record's slow path: the detour traps with an int3
// when the ring is full or the thread's identity block is missing, and the
// tracer writes the record itself from the frame (the place of the trap
// says which records are pending).
type Slow struct {
	Block int
	Trap  uint64 // RIP of a thread stopped by the slow path's int3
	Ident uint64 // the identity load (GS:[0]); a fault there is the slow path too
	PC    uint64 // the program's instruction
	Width int
	Write bool
	Value int64 // frame offset of the value's bytes
}

// Frame gives a block's stack frame, as offsets from the frame's start
// (the thread's RSP in the instrumentation, but for the instant a pushfq
// or a push moves it: Place.RSP says by how much).
type Frame struct {
	Size       int64 // how far below the program's RSP the frame starts
	EA         int64 // the access's address (in the traced range)
	TSC        int64 // the time stamp counter after the access
	Flags      int64 // the program's RFLAGS at the block's entry
	FlagsAfter int64 // the program's RFLAGS after the access
	// Saved are the registers the block saves (which of them hold the
	// program's values at a place: Place.Saved).
	Saved []SavedReg
}

// SavedReg is a register (encoding number) saved in the frame at Off.
type SavedReg struct {
	Reg int
	Off int64
}

// Contains reports whether addr is in the detour's code.
func (d *Detour) Contains(addr uint64) bool {
	return addr >= d.At && addr-d.At < uint64(len(d.Code))
}

// Size returns how many bytes the detour of s needs.
func Size(s *Spec) (int, error) {
	// Every field is rel32 or absolute, so the size does not depend on
	// the address: build it where it would go if it were next to the code.
	d, err := Build(s, s.Window.Start())
	if err != nil {
		return 0, err
	}
	return len(d.Code), nil
}

// frame offsets (see layout)
const (
	fFlags  = 0
	fFlags2 = 8
	fSave   = 16
)

// builder holds the state of one block of a Build.
type builder struct {
	s     *Spec
	a     *asm.Asm
	d     *Detour
	blk   int // index in d.Blocks
	t     *Target
	in    *x86.Inst
	f     x86.Form
	pc    uint64
	s1    int // the effective address
	s2    int // the value
	s3    int // a temporary; the old value of a read-modify-write
	saved []int
	size  int64 // the frame, below the red zone
	ea    int64
	tsc   int64
	tid   int64
	val   [2]int64
	recs  []rec
	pl    Place // the place of the next instruction
}

// mark records that the place from here on is b.pl.
func (b *builder) mark() {
	a, d := b.a.Addr(), b.d
	if n := len(d.places); n > 0 && d.places[n-1].addr == a {
		d.places[n-1].p = b.pl
		return
	}
	d.places = append(d.places, mark{a, b.pl})
}

// save stores register r into its slot: its program value is there from
// the next instruction on.
func (b *builder) save(r int) {
	b.a.Store64(rsp, b.slot(r), r)
	b.pl.Saved |= 1 << r
	b.mark()
}

// rec is one record an access makes.
type rec struct {
	write bool
	width int
	value int64 // frame offset
}

// Build generates the detour of s at address at.
func Build(s *Spec, at uint64) (*Detour, error) {
	w := &s.Window
	if len(w.Insns) == 0 || w.End()-w.Start() < JumpLen {
		return nil, fmt.Errorf("optprobe: window too short")
	}
	if len(s.Probes) == 0 || s.Probes[0].Index != 0 {
		return nil, fmt.Errorf("optprobe: the window's first instruction must be probed")
	}
	a := asm.New(at)
	d := &Detour{At: at, Exact: map[uint64]uint64{}, Entry: map[uint64]uint64{}}
	probes := s.Probes
	for i, in := range w.Insns {
		d.Exact[a.Addr()] = in.PC
		d.Entry[in.PC] = a.Addr()
		if len(probes) > 0 && probes[0].Index == i {
			if err := block(s, a, d, in, &probes[0].Target); err != nil {
				return nil, err
			}
			probes = probes[1:]
			continue
		}
		if i == 0 {
			return nil, fmt.Errorf("optprobe: the window's first instruction must be probed")
		}
		start := a.Addr()
		mids, err := relocate(a, in)
		if err != nil {
			return nil, err
		}
		// Inside a relocated call: undone by going back to its start.
		for _, m := range mids {
			d.places = append(d.places, mark{start + uint64(m.off), Place{Block: -1, Phase: PhaseBefore, Restart: start, RSP: m.rsp}})
		}
	}
	if len(probes) > 0 {
		return nil, fmt.Errorf("optprobe: probe of instruction %d outside the window", probes[0].Index)
	}
	d.Exact[a.Addr()] = w.End()
	a.JmpAbs(w.End())
	code, err := a.Finish()
	if err != nil {
		return nil, err
	}
	d.Code = code
	return d, nil
}

// block emits the block of probed instruction in, for target t.
func block(s *Spec, a *asm.Asm, d *Detour, in Insn, t *Target) error {
	f, err := Classify(in.Inst)
	if err != nil {
		return err
	}
	if f.Read && !t.Read || f.Write && !t.Write {
		return fmt.Errorf("%w: %v: the program may not make this access to %#x-%#x", ErrNotOptimizable, in.Inst, t.Lo, t.Hi)
	}
	if t.Hi-t.Lo < uint64(f.MemSize) || t.Hi < t.Lo {
		return fmt.Errorf("optprobe: target %#x-%#x smaller than the access", t.Lo, t.Hi)
	}
	b := &builder{s: s, a: a, d: d, blk: len(d.Blocks), t: t, in: in.Inst, f: f, pc: in.PC}
	if err := b.regs(); err != nil {
		return err
	}
	b.layout()
	start := a.Addr()
	if err := b.body(in); err != nil {
		return err
	}
	blk := Block{PC: in.PC, Start: start, Next: a.Addr(),
		Frame: Frame{Size: RedZone + b.size, EA: b.ea, TSC: b.tsc, Flags: fFlags, FlagsAfter: fFlags2}}
	for _, r := range b.saved {
		blk.Frame.Saved = append(blk.Frame.Saved, SavedReg{r, int64(b.slot(r))})
	}
	d.Blocks = append(d.Blocks, blk)
	return nil
}

// regs picks the scratch registers: none the instruction uses, RSP never,
// and for a byte operation beside AH-BH a value register that has a byte
// form without REX. Registers the record code needs anyway come first, so
// that fewer are saved.
func (b *builder) regs() error {
	f := &b.f
	used := uint32(1 << rsp)
	if f.Base >= 0 {
		used |= 1 << f.Base
	}
	if f.Index >= 0 {
		used |= 1 << f.Index
	}
	if gprOperand(f) {
		used |= 1 << f.Reg
	}
	if f.Kind == x86.KindCmpxchg {
		used |= 1 << rax
	}
	if f.Kind == x86.KindShift && !f.HasImm {
		used |= 1 << rcx
	}
	order := []int{r11, rax, rcx, rdx, r10, r9, r8, rsi, rdi, rbx, rbp, r12, r13, r14, r15}
	pick := func(ok func(int) bool) int {
		for _, r := range order {
			if used&(1<<r) == 0 && ok(r) {
				used |= 1 << r
				return r
			}
		}
		return -1
	}
	// Beside AH-BH no REX prefix is possible: the re-encoded instruction
	// addresses through a legacy register, and the register form uses
	// AL-BL.
	b.s2 = pick(func(r int) bool { return !f.High || r < 4 })
	b.s1 = pick(func(r int) bool { return !f.High || r < 8 })
	b.s3 = pick(func(int) bool { return true })
	if b.s1 < 0 || b.s2 < 0 || b.s3 < 0 {
		return fmt.Errorf("%w: %v: no scratch registers", ErrNotOptimizable, b.in)
	}
	b.saved = []int{b.s1, b.s2, b.s3}
	for _, r := range []int{rax, rcx, rdx, r11} {
		if !slices.Contains(b.saved, r) {
			b.saved = append(b.saved, r)
		}
	}
	return nil
}

// layout places the frame: flags at entry, flags after the access, the
// saved registers, the address, the counter, the identity, two values.
func (b *builder) layout() {
	off := int64(fSave + 8*len(b.saved))
	b.ea, b.tsc, b.tid = off, off+8, off+16
	vw := int64(8)
	if b.f.Kind == x86.KindVecLoad || b.f.Kind == x86.KindVecStore {
		vw = 64
	}
	b.val = [2]int64{off + 24, off + 24 + vw}
	b.size = (off + 24 + 2*vw + 15) &^ 15
}

func (b *builder) slot(r int) int32 { return int32(fSave + 8*slices.Index(b.saved, r)) }

// drop is how far the detour moves RSP: past the red zone and its frame.
func (b *builder) drop() int32 { return int32(RedZone + b.size) }

func (b *builder) body(in Insn) error {
	a, f := b.a, &b.f
	fallback, next := a.Label(), a.Label()
	start := a.Addr()

	// Entry: below the red zone, save the flags and the scratch registers.
	b.pl = Place{Block: b.blk, Phase: PhaseBefore, Restart: start}
	b.mark()
	a.Lea(rsp, rsp, -b.drop())
	b.pl.RSP = int64(b.drop())
	b.mark()
	a.Pushfq()
	b.pl.RSP += 8
	b.mark()
	a.PopMem(rsp, fFlags)
	b.pl.RSP -= 8
	b.pl.Flags = FlagsEntry
	b.mark()
	for _, r := range []int{b.s1, b.s2, b.s3} {
		b.save(r)
	}
	if err := b.address(); err != nil {
		return err
	}

	// Is the access to the target, all of it? Otherwise the program's
	// own instruction runs (and traps if it touches another armed page).
	t := b.t
	a.MovRR(b.s2, b.s1)
	a.Movabs(b.s3, t.Lo)
	a.ALU64(0x29, b.s2, b.s3) // sub
	if limit := t.Hi - t.Lo - uint64(f.MemSize); limit <= math.MaxInt32 {
		a.ALU64Imm(7, b.s2, int32(limit)) // cmp
	} else {
		a.Movabs(b.s3, limit)
		a.ALU64(0x39, b.s2, b.s3)
	}
	a.Jcc(ccA, fallback)
	if f.Align {
		// A misaligned aligned move raises #GP: the CPU does that.
		a.RegOp(true, []byte{0xF7}, 0, b.s1) // test s1, imm32
		a.U32(uint32(f.MemSize) - 1)
		a.Jcc(ccNE, fallback)
	}
	if f.Kind == x86.KindShift && !f.HasImm {
		// Counts the trap path leaves to the CPU go there too.
		a.MovRR(b.s2, rcx)
		mask := int32(31)
		if f.Size == 8 {
			mask = 63
		}
		a.ALU64Imm(4, b.s2, mask) // and
		a.Jcc(ccE, fallback)
		if f.Op >= x86.OpShl && f.Size <= 2 {
			a.ALU64Imm(7, b.s2, int32(f.Size)*8)
			a.Jcc(ccAE, fallback)
		}
	}
	a.Store64(rsp, int32(b.ea), b.s1)
	md := int32(0)
	if delta := int64(t.Alias - t.Lo); delta == int64(int32(delta)) {
		md = int32(delta)
	} else {
		a.Movabs(b.s3, uint64(delta))
		a.ALU64(0x01, b.s1, b.s3) // add
	}
	switch f.Kind {
	case x86.KindXchg, x86.KindXadd:
		a.MovRR(b.s2, int(f.Reg))
	case x86.KindCmpxchg:
		a.MovRR(b.s2, rax)
	}

	// The access, with the program's flags.
	b.restoreFlags(fFlags, FlagsEntry)
	if err := b.access(md); err != nil {
		return err
	}
	a.Pushfq()
	b.pl.RSP += 8
	b.mark()
	a.PopMem(rsp, fFlags2)
	b.pl.RSP -= 8
	b.pl.Flags = FlagsAfter
	b.mark()
	b.stash()
	b.pl.Phase = PhaseAfter
	b.mark()
	b.records()
	b.restoreFlags(fFlags2, FlagsAfter)
	b.restore()
	a.Jmp(next)

	// Not the target: the program's instruction, on its own address.
	a.Bind(fallback)
	b.pl = Place{Block: b.blk, Phase: PhaseBefore, Restart: start, RSP: int64(b.drop()), Flags: FlagsEntry, Saved: 1<<b.s1 | 1<<b.s2 | 1<<b.s3}
	b.mark()
	b.restoreFlags(fFlags, FlagsEntry)
	b.restore()
	b.d.Exact[a.Addr()] = in.PC
	if _, err := relocate(a, in); err != nil {
		return err
	}
	a.Bind(next)
	return nil
}

// restoreFlags loads the program's flags from the frame at off (where, at
// this place, the program's flags are: where).
func (b *builder) restoreFlags(off int32, where int) {
	b.a.PushMem(rsp, off)
	b.pl.RSP += 8
	b.mark()
	b.a.Popfq()
	b.pl.RSP -= 8
	b.pl.Flags = where // also live now; the frame's copy says the same
	b.mark()
}

// restore reloads the scratch registers and gives RSP back.
func (b *builder) restore() {
	for _, r := range []int{b.s1, b.s2, b.s3} {
		b.a.Load64(r, rsp, b.slot(r))
	}
	b.a.Lea(rsp, rsp, b.drop())
	b.pl.RSP, b.pl.Saved, b.pl.Flags = 0, 0, FlagsLive
	b.mark()
}

// address computes the access's linear address into s1, as the CPU would
// from the program's registers (RSP as it was before the detour moved it).
func (b *builder) address() error {
	a, f := b.a, &b.f
	l, _ := b.in.Layout()
	switch {
	case f.RIP:
		ea := b.pc + uint64(b.in.Len) + uint64(f.Disp)
		if f.Addr32 {
			ea = uint64(uint32(ea))
		}
		a.Movabs(b.s1, ea)
	case l.ModRM < 0: // moffs
		a.Movabs(b.s1, uint64(f.Disp))
	default:
		disp := f.Disp
		if f.Base == rsp {
			disp += int64(b.drop())
		}
		if disp != int64(int32(disp)) {
			return fmt.Errorf("%w: %v: displacement out of range", ErrNotOptimizable, b.in)
		}
		a.LeaSIB(b.s1, int(f.Base), int(f.Index), f.Scale, int32(disp))
		if f.Addr32 {
			a.MovRR32(b.s1, b.s1)
		}
	}
	if f.Kind == x86.KindBT && !f.HasImm {
		// A register bit offset is signed and may pick another unit:
		// address the unit, and let the register form take the bit
		// modulo the width, as the memory form does within the unit.
		reg := int(f.Reg)
		switch f.Size {
		case 2:
			a.RegOp(true, []byte{0x0F, 0xBF}, b.s2, reg) // movsx r64, r16
		case 4:
			a.RegOp(true, []byte{0x63}, b.s2, reg) // movsxd
		default:
			a.MovRR(b.s2, reg)
		}
		a.Shift64(7, b.s2, uint8(bits.TrailingZeros(uint(f.Size)*8))) // sar
		a.Shift64(4, b.s2, uint8(bits.TrailingZeros(uint(f.Size))))   // shl
		a.ALU64(0x01, b.s1, b.s2)
	}
	return nil
}

// access performs the instruction's access on [s1 + md], the alias.
func (b *builder) access(md int32) error {
	a, f := b.a, &b.f
	emit := func(code []byte, err error) error {
		if err == nil {
			a.Bytes(code...)
		}
		return err
	}
	// Until its first access has run, the thread can still be sent back
	// to the probed instruction (PhaseBefore); from then on it is in the
	// middle of the access.
	accessed := func() {
		b.pl.Phase = PhaseAccess
		b.mark()
	}
	defer func() {
		if b.pl.Phase != PhaseAccess {
			accessed()
		}
	}()
	switch f.Kind {
	case x86.KindMovLoad, x86.KindMovbeLoad, x86.KindMovStore, x86.KindMovbeStore, x86.KindMovStoreImm,
		x86.KindVecLoad, x86.KindVecStore, x86.KindXchg, x86.KindXadd, x86.KindCmpxchg:
		return emit(withMem(b.in, b.s1, md))
	case x86.KindSetcc:
		if err := emit(withReg(b.in, b.s2)); err != nil {
			return err
		}
		b.movStore(1, b.s1, md, b.s2)
		return nil
	}
	b.movLoad(int(f.MemSize), b.s2, b.s1, md)
	accessed()
	if rmw(f) {
		a.MovRR(b.s3, b.s2)
	}
	if err := emit(withReg(b.in, b.s2)); err != nil {
		return err
	}
	if rmw(f) {
		b.movStore(int(f.MemSize), b.s1, md, b.s2)
	}
	return nil
}

// rmw reports an instruction the detour performs as load, register
// operation, store.
func rmw(f *x86.Form) bool {
	switch f.Kind {
	case x86.KindALUStore:
		return f.Op != x86.OpCmp && f.Op != x86.OpTest
	case x86.KindUnary, x86.KindShift:
		return true
	case x86.KindBT:
		return f.Op != x86.OpBT
	}
	return false
}

// movLoad is mov r, [base+disp] of size bytes (mov r8 needs REX for SPL to
// DIL).
func (b *builder) movLoad(size, r, base int, disp int32) {
	switch size {
	case 1:
		b.a.MemOp(false, []byte{0x8A}, r, base, disp, true)
	case 2:
		b.a.Bytes(0x66)
		b.a.MemOp(false, []byte{0x8B}, r, base, disp, false)
	default:
		b.a.MemOp(size == 8, []byte{0x8B}, r, base, disp, false)
	}
}

// movStore is mov [base+disp], r of size bytes.
func (b *builder) movStore(size, base int, disp int32, r int) {
	switch size {
	case 1:
		b.a.MemOp(false, []byte{0x88}, r, base, disp, true)
	case 2:
		b.a.Bytes(0x66)
		b.a.MemOp(false, []byte{0x89}, r, base, disp, false)
	default:
		b.a.MemOp(size == 8, []byte{0x89}, r, base, disp, false)
	}
}

// stash stores the values of the access's records into the frame. The
// flags are the detour's from here on.
func (b *builder) stash() {
	a, f := b.a, &b.f
	w := int(f.MemSize)
	read := func(v int64) { b.recs = append(b.recs, rec{false, w, v}) }
	write := func(v int64) { b.recs = append(b.recs, rec{true, w, v}) }
	// reg stores a general register's operand bits (AH-BH: bits 8-15).
	reg := func(off int64, r int, high bool) {
		if high {
			a.MovRR(b.s3, r)
			a.Shift64(5, b.s3, 8)
			r = b.s3
		}
		a.Store64(rsp, int32(off), r)
	}
	v0, v1 := b.val[0], b.val[1]
	switch f.Kind {
	case x86.KindMovLoad:
		reg(v0, int(f.Reg), f.High)
		read(v0)
	case x86.KindMovStore:
		reg(v0, int(f.Reg), f.High)
		write(v0)
	case x86.KindMovbeLoad, x86.KindMovbeStore:
		// The record holds the bytes in memory order.
		a.MovRR(b.s3, int(f.Reg))
		a.Bswap64(b.s3)
		a.Shift64(5, b.s3, uint8(64-8*w))
		a.Store64(rsp, int32(v0), b.s3)
		if f.Kind == x86.KindMovbeLoad {
			read(v0)
		} else {
			write(v0)
		}
	case x86.KindMovStoreImm:
		a.StoreImm64(rsp, int32(v0), int32(f.Imm))
		write(v0)
	case x86.KindSetcc:
		a.Store64(rsp, int32(v0), b.s2)
		write(v0)
	case x86.KindXchg:
		reg(v0, int(f.Reg), f.High) // the old value, now in the register
		read(v0)
		reg(v1, b.s2, f.High) // the register before
		write(v1)
	case x86.KindXadd:
		reg(v0, int(f.Reg), f.High) // old
		read(v0)
		if f.High {
			a.Shift64(5, b.s2, 8)
		}
		a.Load64(b.s3, rsp, int32(v0))
		a.ALU64(0x01, b.s3, b.s2) // old + source, wrapped to the width by the record
		a.Store64(rsp, int32(v1), b.s3)
		write(v1)
	case x86.KindCmpxchg:
		// Equal: the old value was the accumulator, the source is
		// written. Not equal: the old value is in the accumulator now,
		// and the CPU writes it back.
		fail, done := a.Label(), a.Label()
		a.Jcc(ccNE, fail)
		a.Store64(rsp, int32(v0), b.s2)
		reg(v1, int(f.Reg), f.High)
		a.Jmp(done)
		a.Bind(fail)
		a.Store64(rsp, int32(v0), rax)
		a.Store64(rsp, int32(v1), rax)
		a.Bind(done)
		read(v0)
		write(v1)
	case x86.KindVecLoad, x86.KindVecStore:
		b.stashVec(v0)
		r := rec{f.Kind == x86.KindVecStore, int(f.VecLen), v0 + int64(f.VecOff)}
		b.recs = append(b.recs, r)
	default:
		if rmw(f) {
			a.Store64(rsp, int32(v0), b.s3)
			read(v0)
			a.Store64(rsp, int32(v1), b.s2)
			write(v1)
		} else {
			a.Store64(rsp, int32(v0), b.s2)
			read(v0)
		}
	}
}

// stashVec stores the vector register of a move into the frame at off, in
// the instruction's own encoding family (legacy SSE, VEX or EVEX), wide
// enough to cover the bytes the move accesses.
func (b *builder) stashVec(off int64) {
	a, f := b.a, &b.f
	l, _ := b.in.Layout()
	raw := b.in.Bytes()
	reg := int(f.Reg)
	n := int(f.VecOff) + int(f.VecLen)
	switch {
	case l.VEX < 0: // movdqu m128, xmm
		a.Bytes(0xF3)
		a.MemOp(false, []byte{0x0F, 0x7F}, reg, rsp, int32(off), false)
	case raw[l.VEX] != 0x62 && reg < 16: // vmovdqu m128/m256
		L := byte(0)
		if n > 16 {
			L = 1
		}
		a.Bytes(0xC5, (^byte(reg)>>3&1)<<7|0x78|L<<2|2, 0x7F)
		a.ModRMMem(reg, rsp, int32(off))
	default: // vmovdqu64 m128/m256/m512
		LL := byte(0)
		switch {
		case n > 32:
			LL = 2
		case n > 16:
			LL = 1
		}
		p0 := (^byte(reg)>>3&1)<<7 | 0x60 | (^byte(reg)>>4&1)<<4 | 1
		a.Bytes(0x62, p0, 0xFE, LL<<5|0x08, 0x7F)
		a.ModRMMem(reg, rsp, int32(off))
	}
}

// records writes the access's records into the ring, in order.
func (b *builder) records() {
	a := b.a
	for _, r := range b.saved[3:] {
		b.save(r)
	}
	a.RDTSC()
	a.Shift64(4, rdx, 32)
	a.ALU64(0x09, rax, rdx) // or
	a.Store64(rsp, int32(b.tsc), rax)
	b.pl.TSC = true
	b.mark()
	for i, r := range b.recs {
		b.record(i, r)
	}
	for _, r := range b.saved[3:] {
		a.Load64(r, rsp, b.slot(r))
	}
}

// record writes record i: identity, ticket, fields, commit.
func (b *builder) record(i int, r rec) {
	a := b.a
	slow, done, retry, notFree := a.Label(), a.Label(), a.Label(), a.Label()
	b.pl.Records = i
	b.mark()
	ident := a.Addr()
	a.LoadGS64(rdx, 0)
	a.MovRR(rax, rdx)
	a.Shift64(5, rax, 32)
	a.ALU64Imm(7, rax, IdentityMagic)
	a.Jcc(ccNE, slow)
	a.Store32(rsp, int32(b.tid), rdx)
	a.Movabs(rcx, b.s.Ring)

	a.Bind(retry)
	a.Load64(rax, rcx, ringHead)
	a.MovRR32(rdx, rax)
	slots := b.s.RingSlots
	if slots == 0 {
		slots = RingSlots
	}
	a.RegOp(false, []byte{0x81}, 4, rdx) // and edx, slots-1
	a.U32(uint32(slots - 1))
	a.Shift64(4, rdx, slotShift)
	a.LeaSIB(r11, rcx, rdx, 0, ringHeaderSize)
	a.Load64(rdx, r11, slotSeq)
	a.ALU64(0x29, rdx, rax) // sequence - ticket: 0 free, <0 full, >0 taken
	a.Jcc(ccNE, notFree)
	a.Lea(rdx, rax, 1)
	a.LockCmpxchg(rcx, ringHead, rdx)
	b.pl.CAS = true
	b.mark()
	a.Jcc(ccNE, retry)
	b.pl.CAS, b.pl.Ticket = false, true
	b.mark()

	a.Load64(rdx, rsp, int32(b.tsc))
	a.Store64(r11, slotTSC, rdx)
	a.Load32(rdx, rsp, int32(b.tid))
	a.Store32(r11, slotTID, rdx)
	info := uint32(r.width)
	if r.write {
		info |= InfoWrite
	}
	a.StoreImm32(r11, slotInfo, info)
	a.Movabs(rdx, b.pc)
	a.Store64(r11, slotPC, rdx)
	a.Load64(rdx, rsp, int32(b.ea))
	a.Store64(r11, slotAddr, rdx)
	for i := 0; i < (r.width+7)/8; i++ {
		a.Load64(rdx, rsp, int32(r.value)+int32(8*i))
		a.Store64(r11, slotValue+int32(8*i), rdx)
	}
	a.Lea(rdx, rax, 1)
	a.Store64(r11, slotSeq, rdx) // commit
	b.pl.Ticket, b.pl.Records = false, i+1
	b.mark()
	a.Jmp(done)

	b.pl.Records = i
	b.mark()
	a.Bind(notFree)
	a.Jcc(ccS, slow)
	a.Jmp(retry)

	a.Bind(slow)
	a.Int3()
	trap := a.Addr()
	a.Jmp(done)
	a.Bind(done)
	b.pl.Records = i + 1
	b.mark()
	b.d.Slow = append(b.d.Slow, Slow{Block: b.blk, Trap: trap, Ident: ident, PC: b.pc,
		Width: r.width, Write: r.write, Value: r.value})
}
