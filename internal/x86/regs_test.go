package x86

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

func TestRegValue(t *testing.T) {
	r := Regs{Rax: 0x1122334455667788, Rbx: 0xa1b2, Rsp: 0x7ffc0010, R15: 0xfffffffffffffff0}
	for _, tc := range []struct {
		reg  x86asm.Reg
		num  int
		want uint64
	}{
		{x86asm.RAX, 0, 0x1122334455667788},
		{x86asm.EAX, 0, 0x55667788},
		{x86asm.AX, 0, 0x7788},
		{x86asm.AL, 0, 0x88},
		{x86asm.AH, -1, 0x77},
		{x86asm.BH, -1, 0xa1},
		{x86asm.SPB, 4, 0x10},
		{x86asm.ESP, 4, 0x7ffc0010},
		{x86asm.R15, 15, 0xfffffffffffffff0},
		{x86asm.R15L, 15, 0xfffffff0},
		{x86asm.R15B, 15, 0xf0},
	} {
		if n := RegNumber(tc.reg); n != tc.num {
			t.Errorf("RegNumber(%v) = %d, want %d", tc.reg, n, tc.num)
		}
		if v, ok := RegValue(&r, tc.reg); !ok || v != tc.want {
			t.Errorf("RegValue(%v) = %#x, %v; want %#x", tc.reg, v, ok, tc.want)
		}
	}
	if _, ok := RegValue(&r, x86asm.X0); ok {
		t.Error("RegValue read a vector register")
	}
}
