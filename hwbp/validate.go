package hwbp

import (
	"errors"
	"fmt"
)

// userLimit is the first address past the largest user address space x86-64
// has (57-bit, with 5-level paging). The kernel refuses breakpoints above its
// own TASK_SIZE_MAX; this bound catches kernel-half and non-canonical
// addresses before the syscall does.
const userLimit = 1 << 56

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid hardware breakpoint")

// Validate reports whether one debug register can watch [addr, addr+length)
// for k. The hardware compares addresses with the low bits of the length
// masked off, so the range must be naturally aligned: length is 1, 2, 4 or 8
// and addr a multiple of it. An execution breakpoint has length 1 (its LEN
// field must be 00). Use Split for ranges that fail only alignment.
func Validate(addr uint64, length int, k Kind) error {
	if !k.Valid() {
		return fmt.Errorf("hwbp: kind %v: %w", k, ErrInvalid)
	}
	if _, ok := lenBits(length); !ok {
		return fmt.Errorf("hwbp: length %d (want 1, 2, 4 or 8): %w", length, ErrInvalid)
	}
	if k == Exec && length != 1 {
		return fmt.Errorf("hwbp: execution breakpoint of length %d (want 1): %w", length, ErrInvalid)
	}
	if addr%uint64(length) != 0 {
		return fmt.Errorf("hwbp: address %#x not aligned to its length %d: %w", addr, length, ErrInvalid)
	}
	if addr >= userLimit || addr+uint64(length) > userLimit {
		return fmt.Errorf("hwbp: address %#x is not a user address: %w", addr, ErrInvalid)
	}
	return nil
}

// Range is one naturally aligned piece of a watched range, small enough for
// one debug register.
type Range struct {
	Addr uint64
	Len  int // 1, 2, 4 or 8; Addr is a multiple of it
}

// Split covers [addr, addr+length) exactly with the fewest naturally aligned
// pieces of 1, 2, 4 or 8 bytes, in address order. Taking at each position
// the largest piece that is aligned there and fits is optimal: any cover must
// cut at each alignment boundary the greedy choice stops at. Split returns
// nil for length 0 and for ranges that wrap around the address space.
func Split(addr, length uint64) []Range {
	if length == 0 || addr+length < addr {
		return nil
	}
	var out []Range
	for length > 0 {
		n := uint64(8)
		for addr%n != 0 || n > length {
			n /= 2
		}
		out = append(out, Range{Addr: addr, Len: int(n)})
		addr += n
		length -= n
	}
	return out
}
