package sysfilter

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/sysmem"
)

// Range is a traced address range [Start, End).
type Range struct{ Start, End uint64 }

// MaxInsns is how many instructions the filters of one thread may hold in
// all: the kernel's MAX_INSNS_PER_PATH, counting 4 for each filter.
const MaxInsns = 32768

// Overhead is what the kernel counts for each filter besides its program.
const Overhead = 4

// maxNr is past the highest x86-64 system call number.
const maxNr = 512

// Ranges is a filter that stops (SECCOMP_RET_TRACE) every x86-64 system
// call whose memory arguments may reach one of ranges, as package sysmem
// describes them from the registers alone (sysmem.Reaches): a pointer
// argument and a length in another argument, checked against each range in
// 64-bit arithmetic; a pointer to a fixed size, as reaching constBound
// bytes; calls that reach memory through pointers in memory (iovecs,
// message headers) always stop; calls the table does not describe stop
// when any argument lies within constBound below a range's end. It fails
// when the program would exceed the kernel's size limit (too many ranges:
// MaxRanges is safe).
// Calls without memory are allowed without looking at their arguments, so
// the kernel's seccomp cache lets them through without running the filter.
func Ranges(ranges []Range) ([]unix.SockFilter, error) {
	if len(ranges) == 0 {
		return nil, fmt.Errorf("sysfilter: no range")
	}
	a := newAsm()
	a.ld(offArch)
	a.jmp(unix.BPF_JEQ, auditArchX86, "", "allow")
	a.ld(offNr)
	a.jmp(unix.BPF_JGE, x32SyscallBit, "allow", "")

	// Each call number goes to a block: allow, trace, or the checks of
	// its reach list (shared by the calls with the same list). Pointers
	// to a fixed size are checked in one shared block, "consts", as
	// pointers to constBound bytes in any argument: few blocks, cheap
	// checks, and the arguments that are not pointers (descriptors,
	// sizes, flags) are never near a mapping.
	type block struct {
		consts bool
		lens   []sysmem.Reach
	}
	blocks := map[string]block{}
	label := make([]string, maxNr)
	for nr := range label {
		r, all, known := sysmem.Reaches(uint64(nr))
		switch {
		case !known:
			label[nr] = "consts"
		case all:
			label[nr] = "trace"
		case len(r) == 0:
			label[nr] = "allow"
		default:
			var b block
			for _, x := range r {
				if x.LenArg < 0 && x.Add <= constBound {
					b.consts = true
				} else {
					b.lens = append(b.lens, x)
				}
			}
			if len(b.lens) == 0 {
				label[nr] = "consts"
				continue
			}
			k := fmt.Sprintf("%v_%s", b.consts, reachKey(b.lens))
			label[nr] = "b" + k
			blocks[k] = b
		}
	}
	// Runs of equal labels, found by a binary search on the number.
	type run struct {
		lo, hi int // [lo, hi)
		label  string
	}
	var runs []run
	for nr := 0; nr < maxNr; nr++ {
		if len(runs) > 0 && runs[len(runs)-1].label == label[nr] {
			runs[len(runs)-1].hi = nr + 1
			continue
		}
		runs = append(runs, run{nr, nr + 1, label[nr]})
	}
	runs[len(runs)-1].hi = 1 << 30 // past the table: unknown calls
	var tree func(rs []run)
	tree = func(rs []run) {
		if len(rs) == 1 {
			a.goTo(rs[0].label)
			return
		}
		mid := len(rs) / 2
		l := fmt.Sprintf("t%d_%d", rs[0].lo, rs[mid].lo)
		a.jmp(unix.BPF_JGE, uint32(rs[mid].lo), l, "")
		tree(rs[:mid])
		a.label(l)
		tree(rs[mid:])
	}
	tree(runs)

	keys := make([]string, 0, len(blocks))
	for k := range blocks {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b := blocks[k]
		a.label("b" + k)
		for i, r := range b.lens {
			checkReach(a, fmt.Sprintf("b%s.%d", k, i), r, ranges)
		}
		if b.consts {
			a.goTo("consts")
		} else {
			a.goTo("allow")
		}
	}
	a.label("consts")
	for p := 0; p < 6; p++ {
		checkConst(a, fmt.Sprintf("c%d", p), p, ranges)
	}
	a.label("allow")
	a.ret(retAllow)
	a.label("trace")
	a.ret(retTrace)
	return a.link()
}

// constBound is how far a pointer to a fixed size is taken to reach: the
// largest fixed size in the table (an ioctl's), which covers
// sysmem.UnknownLen too.
const constBound = 16384

// checkConst emits: go to "trace" if argument ptr lies in
// [Start-constBound+1, End) of a range; else fall through.
func checkConst(a *asm, id string, ptr int, ranges []Range) {
	for i, rg := range ranges {
		skip := fmt.Sprintf("%s.r%d", id, i)
		ptrBelow(a, ptr, rg.End, skip)
		lo := uint64(0)
		if rg.Start >= constBound-1 {
			lo = rg.Start - (constBound - 1)
		}
		a.ld(argHi(ptr))
		a.jmp(unix.BPF_JGT, uint32(lo>>32), "trace", "")
		a.jmp(unix.BPF_JEQ, uint32(lo>>32), "", skip)
		a.ld(argLo(ptr))
		a.jmp(unix.BPF_JGE, uint32(lo), "trace", skip)
		a.label(skip)
	}
}

func reachKey(r []sysmem.Reach) string {
	var b strings.Builder
	for _, x := range r {
		fmt.Fprintf(&b, "%d_%d_%d_%d_", x.Ptr, x.LenArg, x.Scale, x.Add)
	}
	return b.String()
}

// Scratch words of the filter (struct seccomp_data is read-only).
const (
	mLenLo = iota
	mLenHi
	mEndLo
	mEndHi
)

// checkReach emits: go to "trace" if [ptr, ptr+len) overlaps a range;
// else fall through. id makes its labels unique.
func checkReach(a *asm, id string, r sysmem.Reach, ranges []Range) {
	huge, next := id+".huge", id+".next"
	// Quick answers for most calls: a pointer at or past every range's
	// end (the stack, above the mappings) reaches none; nor does one 8 GiB
	// or more below every range's start with a length under 4 GiB (the
	// heap, far below them).
	maxEnd, minStart := ranges[0].End, ranges[0].Start
	for _, rg := range ranges[1:] {
		maxEnd, minStart = max(maxEnd, rg.End), min(minStart, rg.Start)
	}
	ptrBelow(a, r.Ptr, maxEnd, next)
	if hi := uint32(minStart >> 32); hi >= 2 {
		full := id + ".full"
		a.ld(argHi(r.Ptr))
		a.jmp(unix.BPF_JGE, hi-1, full, "")
		if r.LenArg >= 0 {
			a.ld(argHi(r.LenArg))
			a.jmp(unix.BPF_JEQ, 0, next, full)
		} else {
			a.goTo(next)
		}
		a.label(full)
	}
	// len into M[mLenHi]:M[mLenLo]; "huge" when it does not fit 64 bits
	// (or, scaled, 32 bits).
	switch {
	case r.LenArg < 0:
		a.emit(unix.BPF_LD|unix.BPF_IMM, uint32(r.Add))
		a.st(mLenLo)
		a.emit(unix.BPF_LD|unix.BPF_IMM, uint32(r.Add>>32))
		a.st(mLenHi)
	case r.Scale > 1:
		a.ld(argHi(r.LenArg))
		a.jmp(unix.BPF_JEQ, 0, "", huge)
		a.ld(argLo(r.LenArg))
		a.jmp(unix.BPF_JGE, uint32((1<<32-1)/r.Scale), huge, "")
		a.alu(unix.BPF_MUL, uint32(r.Scale))
		addConst(a, r.Add, huge)
		a.st(mLenLo)
		a.emit(unix.BPF_LD|unix.BPF_IMM, 0)
		a.st(mLenHi)
	default:
		a.ld(argHi(r.LenArg))
		a.st(mLenHi)
		a.ld(argLo(r.LenArg))
		if r.Add > 0 {
			// A 32-bit carry into the high word.
			a.jmp(unix.BPF_JGE, uint32(1<<32-r.Add), id+".carry", "")
			a.alu(unix.BPF_ADD, uint32(r.Add))
			a.st(mLenLo)
			a.goTo(id + ".len")
			a.label(id + ".carry")
			a.alu(unix.BPF_ADD, uint32(r.Add))
			a.st(mLenLo)
			a.ldm(mLenHi)
			a.jmp(unix.BPF_JEQ, 0xffffffff, huge, "")
			a.alu(unix.BPF_ADD, 1)
			a.st(mLenHi)
			a.label(id + ".len")
		} else {
			a.st(mLenLo)
		}
	}
	// A zero length reaches nothing.
	a.ldm(mLenLo)
	a.jmp(unix.BPF_JEQ, 0, "", id+".nonzero")
	a.ldm(mLenHi)
	a.jmp(unix.BPF_JEQ, 0, next, "")
	a.label(id + ".nonzero")
	// end = ptr + len.
	a.ld(argLo(r.Ptr))
	a.ldxm(mLenLo)
	a.alux(unix.BPF_ADD)
	a.st(mEndLo)
	a.ld(argHi(r.Ptr))
	a.ldxm(mLenHi)
	a.alux(unix.BPF_ADD)
	a.jmpx(unix.BPF_JGE, "", huge) // the high words' sum wrapped
	a.st(mEndHi)
	// The low words' carry.
	a.ldxm(mEndLo)
	a.ld(argLo(r.Ptr))
	a.jmpx(unix.BPF_JGT, "", id+".nocarry") // ptr_lo > end_lo: carried
	a.ldm(mEndHi)
	a.jmp(unix.BPF_JEQ, 0xffffffff, huge, "")
	a.alu(unix.BPF_ADD, 1)
	a.st(mEndHi)
	a.label(id + ".nocarry")
	for i, rg := range ranges {
		skip := fmt.Sprintf("%s.r%d", id, i)
		ptrBelow(a, r.Ptr, rg.End, skip)
		// end > Start
		a.ldm(mEndHi)
		a.jmp(unix.BPF_JGT, uint32(rg.Start>>32), "trace", "")
		a.jmp(unix.BPF_JEQ, uint32(rg.Start>>32), "", skip)
		a.ldm(mEndLo)
		a.jmp(unix.BPF_JGT, uint32(rg.Start), "trace", skip)
		a.label(skip)
	}
	a.goTo(next)
	// ptr + len beyond 64 bits: every range at or past ptr is reached.
	a.label(huge)
	for i, rg := range ranges {
		skip := fmt.Sprintf("%s.h%d", id, i)
		ptrBelow(a, r.Ptr, rg.End, skip)
		a.goTo("trace")
		a.label(skip)
	}
	a.label(next)
}

// ptrBelow falls through when argument ptr < end, else goes to skip.
func ptrBelow(a *asm, ptr int, end uint64, skip string) {
	a.ld(argHi(ptr))
	a.jmp(unix.BPF_JGT, uint32(end>>32), skip, "")
	a.jmp(unix.BPF_JEQ, uint32(end>>32), "", skip+".lt")
	a.ld(argLo(ptr))
	a.jmp(unix.BPF_JGE, uint32(end), skip, "")
	a.label(skip + ".lt")
}

// addConst adds k to A (32 bits), going to huge on a carry.
func addConst(a *asm, k uint64, huge string) {
	if k == 0 {
		return
	}
	if k >= 1<<32 {
		a.goTo(huge)
		return
	}
	a.jmp(unix.BPF_JGE, uint32(1<<32-k), huge, "")
	a.alu(unix.BPF_ADD, uint32(k))
}

// MaxRanges is how many ranges a Ranges filter can always hold.
const MaxRanges = 7
