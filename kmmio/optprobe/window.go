package optprobe

import (
	"github.com/mmiotrace/mmiotrace/internal/x86/asm"

	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/mmiotrace/mmiotrace/internal/x86"
	"golang.org/x/arch/x86/x86asm"
)

// JumpLen is the length of the jump that replaces a probed instruction
// (E9 rel32).
const JumpLen = 5

// Insn is a decoded instruction at its address in the program.
type Insn struct {
	PC   uint64
	Inst *x86.Inst
}

// End returns the address after the instruction.
func (i Insn) End() uint64 { return i.PC + uint64(i.Inst.Len) }

// Window is the stretch of the program's code an optimized probe replaces:
// the probed instruction and, when it is shorter than the jump, the
// instructions that follow it until the jump fits (they are relocated into
// the detour). Its interior boundaries, the starts of the instructions
// after the first, are guarded: the patch puts an int3 byte on each, so
// that a jump from elsewhere into the window traps, and the tracer moves
// the thread to the same instruction in the detour. Boundaries under the
// jump's displacement get their int3 by instruction punning: the detour is
// placed where the displacement has a 0xCC byte there.
type Window struct {
	Insns []Insn
}

// Start is the probed instruction's address; End is the address after the
// window.
func (w *Window) Start() uint64 { return w.Insns[0].PC }
func (w *Window) End() uint64   { return w.Insns[len(w.Insns)-1].End() }

// Boundaries returns the interior boundaries.
func (w *Window) Boundaries() []uint64 {
	var b []uint64
	for _, in := range w.Insns[1:] {
		b = append(b, in.PC)
	}
	return b
}

// ErrNotRelocatable reports an instruction that cannot be moved into a
// detour.
var ErrNotRelocatable = errors.New("instruction cannot be relocated")

// PlanWindow decodes the window of an optimized probe at pc from code (the
// program's bytes from pc on; at least JumpLen-1 plus 15 of them, fewer at
// the end of a mapping).
func PlanWindow(pc uint64, code []byte) (Window, error) {
	return PlanWindowTo(pc, code, pc+JumpLen)
}

// PlanWindowTo is PlanWindow for a window that reaches end at least (to
// take in the window of another site, or another probed instruction).
func PlanWindowTo(pc uint64, code []byte, end uint64) (Window, error) {
	var w Window
	off := 0
	need := int(max(end-pc, JumpLen))
	if end < pc || need > len(code) {
		return w, fmt.Errorf("window at %#x: end %#x out of the code read", pc, end)
	}
	for off < need {
		if off >= len(code) {
			return w, fmt.Errorf("window at %#x: code ends after %d bytes", pc, off)
		}
		in, err := x86.Decode(code[off:])
		if err != nil {
			return w, fmt.Errorf("window at %#x: %w", pc, err)
		}
		if rest := len(code) - off; rest < x86.MaxLen && in.Len >= rest {
			// The decoder may have taken a truncated encoding for a
			// shorter instruction.
			return w, fmt.Errorf("window at %#x: code ends in the instruction at %#x", pc, pc+uint64(off))
		}
		last := off+in.Len >= need
		if len(w.Insns) > 0 {
			if err := relocatable(in, last); err != nil {
				return w, fmt.Errorf("window at %#x: %v at %#x: %w", pc, in, pc+uint64(off), err)
			}
		}
		w.Insns = append(w.Insns, Insn{pc + uint64(off), in})
		off += in.Len
	}
	return w, nil
}

// relocatable reports whether an instruction can run in a detour: anything
// whose meaning does not depend on its address, RIP-relative operands and
// jumps (whose targets are recomputed), and a call when it ends the window
// (it is replaced by pushing the original return address and jumping).
func relocatable(in *x86.Inst, last bool) error {
	switch in.Op.Op {
	case x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE, x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ,
		x86asm.XBEGIN, x86asm.XABORT:
		return ErrNotRelocatable
	case x86asm.CALL, x86asm.LCALL:
		if _, ok := in.Op.Args[0].(x86asm.Rel); !ok || !last || in.Op.Op == x86asm.LCALL {
			return fmt.Errorf("%w: a call that does not end the window", ErrNotRelocatable)
		}
	}
	if off, n, ok := in.PCRel(); ok && n != 4 && !isBranch(in) {
		return fmt.Errorf("%w: %d-byte RIP-relative field at %d", ErrNotRelocatable, n, off)
	}
	return nil
}

func isBranch(in *x86.Inst) bool {
	_, ok := in.Op.Args[0].(x86asm.Rel)
	return ok
}

// punMask returns which bytes of the jump's rel32 (bit i: byte i, at
// Start+1+i) must be 0xCC because an instruction starts there.
func (w *Window) punMask() uint8 {
	var m uint8
	for _, b := range w.Boundaries() {
		if i := b - w.Start() - 1; i < 4 {
			m |= 1 << i
		}
	}
	return m
}

// Interval is a range of addresses [Lo, Hi].
type Interval struct{ Lo, Hi uint64 }

// Placements returns where the detour of w may start for the patch's
// displacement to be valid, nearest to the window first, at most limit
// intervals: each one is every address whose displacement from the jump
// has 0xCC in the bytes that cover interior boundaries.
func (w *Window) Placements(limit int) []Interval {
	mask := w.punMask()
	next := int64(w.Start() + JumpLen)
	clip := func(lo, hi int64) (Interval, bool) {
		lo, hi = max(lo, 1<<16), min(hi, 1<<47-1) // user space, above mmap_min_addr
		return Interval{uint64(lo), uint64(hi)}, lo <= hi
	}
	if mask == 0 {
		iv, ok := clip(next+math.MinInt32, next+math.MaxInt32)
		if !ok {
			return nil
		}
		return []Interval{iv}
	}
	low := 0 // the free bytes below the lowest constrained one
	for mask&(1<<low) == 0 {
		low++
	}
	span := int64(1)<<(8*low) - 1
	var free []int // free bytes above low: they take every value
	var base uint32
	for i := low; i < 4; i++ {
		if mask&(1<<i) != 0 {
			base |= 0xCC << (8 * i)
		} else {
			free = append(free, i)
		}
	}
	// The displacement as a function of the free bytes' values is
	// increasing once the sign bit is flipped (when the top byte is free):
	// find the first positive one and walk outwards, nearest first.
	k := 1 << (8 * len(free))
	flip := 0
	if len(free) > 0 && free[len(free)-1] == 3 {
		flip = 0x80 << (8 * (len(free) - 1))
	}
	disp := func(j int) int64 {
		v, kv := base, j^flip
		for n, i := range free {
			v |= uint32(kv>>(8*n)&0xFF) << (8 * i)
		}
		return int64(int32(v))
	}
	dist := func(d int64) int64 {
		switch {
		case d > 0:
			return d
		case d+span < 0:
			return -(d + span)
		}
		return 0
	}
	up := sort.Search(k, func(j int) bool { return disp(j) > 0 })
	down := up - 1
	var out []Interval
	for len(out) < limit && (down >= 0 || up < k) {
		var d int64
		if up >= k || down >= 0 && dist(disp(down)) <= dist(disp(up)) {
			d = disp(down)
			down--
		} else {
			d = disp(up)
			up++
		}
		if iv, ok := clip(next+d, next+d+span); ok {
			out = append(out, iv)
		}
	}
	return out
}

// Patch returns the bytes that replace the window when its detour is at
// detour: the jump, then int3 up to the window's end. It fails if the
// jump's displacement does not put 0xCC on every interior boundary under
// it, or does not fit.
func (w *Window) Patch(detour uint64) ([]byte, error) {
	d, ok := asm.Rel32(detour, w.Start()+JumpLen)
	if !ok {
		return nil, fmt.Errorf("optprobe: detour at %#x is out of reach of %#x", detour, w.Start())
	}
	p := make([]byte, w.End()-w.Start())
	p[0] = 0xE9
	binary.LittleEndian.PutUint32(p[1:], uint32(d))
	for i := JumpLen; i < len(p); i++ {
		p[i] = 0xCC
	}
	for _, b := range w.Boundaries() {
		if p[b-w.Start()] != 0xCC {
			return nil, fmt.Errorf("optprobe: detour at %#x does not guard the instruction at %#x", detour, b)
		}
	}
	return p, nil
}
