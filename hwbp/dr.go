package hwbp

import (
	"fmt"
	"strings"
)

// NumSlots is the number of debug address registers (DR0-DR3).
const NumSlots = 4

// DR7 is the debug control register (SDM Vol. 3, 18.2.4):
//
//	bit  2i       Li   local enable of slot i (cleared by the CPU on task switch;
//	                   Linux switches it per thread itself)
//	bit  2i+1     Gi   global enable of slot i
//	bit  8        LE   local exact breakpoint enable
//	bit  9        GE   global exact breakpoint enable
//	bit  10            reserved, reads as 1
//	bit  13       GD   general detect
//	bits 16+4i..  R/Wi access type of slot i (Kind)
//	bits 18+4i..  LENi length of slot i (00=1, 01=2, 11=4, 10=8 bytes)
//
// Linux itself programs its breakpoints with Gi and GE set (encode_dr7 in
// arch/x86/kernel/hw_breakpoint.c). Through ptrace either enable bit of a
// slot enables it; gdb and this package set Li and LE.
type DR7 uint64

// DR7 bits outside the per-slot fields.
const (
	DR7LE       DR7 = 1 << 8  // local exact (P6 and later ignore it; set for compatibility)
	DR7GE       DR7 = 1 << 9  // global exact
	DR7Reserved DR7 = 1 << 10 // reads as 1
	DR7GD       DR7 = 1 << 13 // general detect
)

// slotOK reports whether i names a debug address register. Accessors given
// another number read as zero and setters leave the register unchanged.
func slotOK(i int) bool { return i >= 0 && i < NumSlots }

// LocalEnabled reports Li for slot i.
func (d DR7) LocalEnabled(i int) bool { return slotOK(i) && d>>(2*i)&1 != 0 }

// GlobalEnabled reports Gi for slot i.
func (d DR7) GlobalEnabled(i int) bool { return slotOK(i) && d>>(2*i+1)&1 != 0 }

// Enabled reports whether slot i is enabled by either Li or Gi, which is how
// the kernel's ptrace interface reads a DR7 write.
func (d DR7) Enabled(i int) bool { return slotOK(i) && d>>(2*i)&3 != 0 }

// SetLocal returns d with Li of slot i set or cleared.
func (d DR7) SetLocal(i int, on bool) DR7 {
	if !slotOK(i) {
		return d
	}
	d &^= 1 << (2 * i)
	if on {
		d |= 1 << (2 * i)
	}
	return d
}

// SetGlobal returns d with Gi of slot i set or cleared.
func (d DR7) SetGlobal(i int, on bool) DR7 {
	if !slotOK(i) {
		return d
	}
	d &^= 2 << (2 * i)
	if on {
		d |= 2 << (2 * i)
	}
	return d
}

// RW returns slot i's R/W field.
func (d DR7) RW(i int) Kind {
	if !slotOK(i) {
		return 0
	}
	return Kind(d >> (16 + 4*i) & 3)
}

// SetRW returns d with slot i's R/W field set to k.
func (d DR7) SetRW(i int, k Kind) DR7 {
	if !slotOK(i) {
		return d
	}
	sh := 16 + 4*i
	return d&^(3<<sh) | DR7(k&3)<<sh
}

// LenBits returns slot i's raw LEN field.
func (d DR7) LenBits(i int) uint8 {
	if !slotOK(i) {
		return 0
	}
	return uint8(d >> (18 + 4*i) & 3)
}

// Len returns slot i's length in bytes, decoded from its LEN field.
func (d DR7) Len(i int) int { return lenFromBits(d.LenBits(i)) }

// SetLen returns d with slot i's LEN field set for length bytes (1, 2, 4 or
// 8), and false if length has no encoding.
func (d DR7) SetLen(i, length int) (DR7, bool) {
	if !slotOK(i) {
		return d, false
	}
	b, ok := lenBits(length)
	if !ok {
		return d, false
	}
	sh := 18 + 4*i
	return d&^(3<<sh) | DR7(b)<<sh, true
}

// Slot returns d with slot i locally enabled for k and length, with LE set;
// length must be valid for k (see Validate), or d is returned unchanged with
// false.
func (d DR7) Slot(i int, k Kind, length int) (DR7, bool) {
	if !k.Valid() || (k == Exec && length != 1) {
		return d, false
	}
	d, ok := d.SetLen(i, length)
	if !ok {
		return d, false
	}
	return d.SetRW(i, k).SetLocal(i, true) | DR7LE, true
}

// Clear returns d with slot i disabled and its R/W and LEN fields zeroed.
func (d DR7) Clear(i int) DR7 {
	if !slotOK(i) {
		return d
	}
	return d.SetLocal(i, false).SetGlobal(i, false).SetRW(i, 0) &^ (3 << (18 + 4*i))
}

// AnyEnabled reports whether any slot is enabled.
func (d DR7) AnyEnabled() bool { return d&0xff != 0 }

// String lists the enabled slots, for example "dr7{1:write/4}".
func (d DR7) String() string {
	var b strings.Builder
	b.WriteString("dr7{")
	n := 0
	for i := range NumSlots {
		if !d.Enabled(i) {
			continue
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		n++
		fmt.Fprintf(&b, "%d:%v/%d", i, d.RW(i), d.Len(i))
	}
	b.WriteByte('}')
	return b.String()
}

// lenBits encodes a length into the LEN field. The encoding is not monotonic:
// 0b10 means 8 bytes (on 64-bit processors) and 0b11 means 4.
func lenBits(n int) (uint8, bool) {
	switch n {
	case 1:
		return 0b00, true
	case 2:
		return 0b01, true
	case 4:
		return 0b11, true
	case 8:
		return 0b10, true
	}
	return 0, false
}

func lenFromBits(b uint8) int {
	switch b & 3 {
	case 0b00:
		return 1
	case 0b01:
		return 2
	case 0b11:
		return 4
	default:
		return 8
	}
}

// DR6 is the debug status register (SDM Vol. 3, 18.2.3), in the
// architectural polarity the kernel's ptrace interface returns it in:
//
//	bits 0-3  B0-B3 slot i's condition was met
//	bit  13   BD    the next instruction accesses a debug register (GD)
//	bit  14   BS    single-step trap
//	bit  15   BT    task switch
//
// The remaining bits are reserved (most read as 1).
type DR6 uint64

// DR6 status bits.
const (
	DR6B0 DR6 = 1 << 0
	DR6BD DR6 = 1 << 13
	DR6BS DR6 = 1 << 14
	DR6BT DR6 = 1 << 15
)

// Hit reports Bi: slot i's breakpoint condition was met.
func (d DR6) Hit(i int) bool { return slotOK(i) && d>>i&1 != 0 }

// Hits returns B0-B3 as a 4-bit mask.
func (d DR6) Hits() uint8 { return uint8(d & 0xf) }

// SingleStep reports BS.
func (d DR6) SingleStep() bool { return d&DR6BS != 0 }

// DebugRegAccess reports BD.
func (d DR6) DebugRegAccess() bool { return d&DR6BD != 0 }

// String names the set status bits, for example "dr6{B1 BS}".
func (d DR6) String() string {
	var parts []string
	for i := range NumSlots {
		if d.Hit(i) {
			parts = append(parts, fmt.Sprintf("B%d", i))
		}
	}
	if d.DebugRegAccess() {
		parts = append(parts, "BD")
	}
	if d.SingleStep() {
		parts = append(parts, "BS")
	}
	if d&DR6BT != 0 {
		parts = append(parts, "BT")
	}
	return "dr6{" + strings.Join(parts, " ") + "}"
}
