package sysfilter

import (
	"cmp"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/sysmem"
)

// stops is what the filter must answer: whether a call may reach a range,
// from sysmem.Reaches, in exact arithmetic. A scaled length is taken as
// unbounded from (2^32-1)/Scale elements on, as the filter does.
func stops(nr uint64, args [6]uint64, ranges []Range) bool {
	r, all, known := sysmem.Reaches(nr)
	if !known {
		for i := range args {
			r = append(r, sysmem.Reach{Ptr: i, LenArg: -1, Add: sysmem.UnknownLen})
		}
	}
	if all {
		return true
	}
	// Fixed sizes are checked as constBound bytes at any argument.
	var lens []sysmem.Reach
	consts := false
	for _, x := range r {
		if x.LenArg < 0 && x.Add <= constBound {
			consts = true
		} else {
			lens = append(lens, x)
		}
	}
	r = lens
	if consts {
		for i := range args {
			r = append(r, sysmem.Reach{Ptr: i, LenArg: -1, Add: constBound})
		}
	}
	for _, rc := range r {
		ptr := new(big.Int).SetUint64(args[rc.Ptr])
		n := new(big.Int).SetUint64(rc.Add)
		huge := false
		if rc.LenArg >= 0 {
			l := args[rc.LenArg]
			if rc.Scale > 1 && (l>>32 != 0 || uint32(l) >= uint32((1<<32-1)/rc.Scale)) {
				huge = true
			}
			n.Add(n, new(big.Int).Mul(new(big.Int).SetUint64(l), new(big.Int).SetUint64(max(rc.Scale, 1))))
			if rc.Scale > 1 && n.Cmp(big.NewInt(1<<32)) >= 0 {
				huge = true
			}
		}
		end := new(big.Int).Add(ptr, n)
		if end.Cmp(new(big.Int).Lsh(big.NewInt(1), 64)) >= 0 {
			huge = true
		}
		if n.Sign() == 0 && !huge {
			continue
		}
		for _, rg := range ranges {
			below := ptr.Cmp(new(big.Int).SetUint64(rg.End)) < 0
			if below && (huge || end.Cmp(new(big.Int).SetUint64(rg.Start)) > 0) {
				return true
			}
		}
	}
	return false
}

// TestRanges checks the filter against stops on calls of every number,
// with arguments around the ranges' edges and at random.
func TestRanges(t *testing.T) {
	ranges := []Range{{0x7f0000001000, 0x7f0000003000}, {0x5555_0000_0000, 0x5555_0001_0000}, {0xfffff000, 0x100002000}, {0x3000, 0x5000}}
	prog, err := Ranges(ranges)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d instructions", len(prog))
	rng := rand.New(rand.NewPCG(1, 2))
	edge := func() uint64 {
		rg := ranges[rng.IntN(len(ranges))]
		switch rng.IntN(6) {
		case 0:
			return rg.Start - uint64(rng.IntN(5000))
		case 1:
			return rg.End + uint64(rng.IntN(3)) - 1
		case 2:
			return rg.Start + uint64(rng.IntN(int(rg.End-rg.Start)))
		case 3:
			return uint64(rng.IntN(100000)) // lengths, counts
		case 4:
			return rng.Uint64()
		}
		return ^uint64(0) - uint64(rng.IntN(5000))
	}
	for nr := uint64(0); nr < maxNr+10; nr++ {
		for i := 0; i < 400; i++ {
			var args [6]uint64
			for j := range args {
				args[j] = edge()
			}
			want := stops(nr, args, ranges)
			got := run(t, prog, x86(uint32(nr), args[:]...)) == retTrace
			if got != want {
				t.Fatalf("%s %#x: filter stops %v, want %v", sysmem.Name(nr), args, got, want)
			}
		}
	}
	// Calls without memory never look at their arguments (the seccomp
	// cache then allows them without running the filter): getpid with
	// arguments in a range is allowed.
	if run(t, prog, x86(unix.SYS_GETPID, 0x7f0000001000, 0x7f0000001000)) != retAllow {
		t.Error("getpid stopped")
	}
	if run(t, prog, x86(unix.SYS_READV, 0, 0, 0)) != retTrace {
		t.Error("readv not stopped")
	}
}

// TestMaxRangesFit checks that MaxRanges ranges always make a program the
// kernel accepts, whatever their shape: neighbours in one 4 GiB window,
// ranges crossing a 4 GiB boundary, ranges in windows of their own, and
// the top of the address space. (With 8, the first shape took 4112
// instructions, and a ninth traced mapping failed the session.)
func TestMaxRangesFit(t *testing.T) {
	shapes := map[string]func(i int) Range{
		"one window": func(i int) Range {
			s := uint64(0x7f0000000000 + i*0x200000)
			return Range{Start: s, End: s + 0x100000}
		},
		"crossing 4G": func(i int) Range {
			s := uint64(0x7f0000000000+i<<32) - 0x1000
			return Range{Start: s, End: s + 0x3000}
		},
		"windows apart": func(i int) Range {
			s := uint64(0x100000000 * (i + 1))
			return Range{Start: s, End: s + 0x1000}
		},
		"top": func(i int) Range {
			s := uint64(0x7ffffff00000 - i*0x10000)
			return Range{Start: s, End: s + 0x8000}
		},
	}
	for name, shape := range shapes {
		ranges := make([]Range, MaxRanges)
		for i := range ranges {
			ranges[len(ranges)-1-i] = shape(i)
		}
		slices.SortFunc(ranges, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
		prog, err := Ranges(ranges)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(prog) > unix.BPF_MAXINSNS {
			t.Errorf("%s: %d instructions", name, len(prog))
		}
	}
}

// BenchmarkRanges builds the filter of one range, what a session builds
// when it arms its first mapping, and of MaxRanges ranges.
func BenchmarkRanges(b *testing.B) {
	for _, n := range []int{1, MaxRanges} {
		ranges := make([]Range, n)
		for i := range ranges {
			start := uint64(0x7f0000000000 + i*0x200000)
			ranges[i] = Range{Start: start, End: start + 0x100000}
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Ranges(ranges); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
