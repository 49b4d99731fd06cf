package x86

import "golang.org/x/arch/x86/x86asm"

// RegNumber returns the encoding number (0 RAX ... 15 R15) of a general
// register of any width, or -1 for anything else, AH..BH included (no
// address uses them).
func RegNumber(reg x86asm.Reg) int {
	switch {
	case reg >= x86asm.RAX && reg <= x86asm.R15:
		return int(reg - x86asm.RAX)
	case reg >= x86asm.EAX && reg <= x86asm.R15L:
		return int(reg - x86asm.EAX)
	case reg >= x86asm.AX && reg <= x86asm.R15W:
		return int(reg - x86asm.AX)
	case reg >= x86asm.AL && reg <= x86asm.BL:
		return int(reg - x86asm.AL)
	case reg >= x86asm.SPB && reg <= x86asm.R15B:
		return int(reg-x86asm.SPB) + 4
	}
	return -1
}

// RegValue reads a general register of any width from r, zero-extended:
// the low 8, 16, 32 or all 64 bits of its full register, or bits 8-15 for
// AH..BH. It reports false for a register that is not a general one.
func RegValue(r *Regs, reg x86asm.Reg) (uint64, bool) {
	if reg >= x86asm.AH && reg <= x86asm.BH {
		return *gpr(r, uint8(reg-x86asm.AH)) >> 8 & 0xff, true
	}
	n := RegNumber(reg)
	if n < 0 {
		return 0, false
	}
	v := *gpr(r, uint8(n))
	switch {
	case reg >= x86asm.EAX && reg <= x86asm.R15L:
		v &= 0xFFFFFFFF
	case reg >= x86asm.AX && reg <= x86asm.R15W:
		v &= 0xFFFF
	case reg >= x86asm.AL && reg <= x86asm.BL, reg >= x86asm.SPB && reg <= x86asm.R15B:
		v &= 0xFF
	}
	return v, true
}
