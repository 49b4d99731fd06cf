package optprobe

import "github.com/mmiotrace/mmiotrace/internal/x86/asm"

// The registers and branch conditions of package asm, by the short names
// the detours are written with.
const (
	rax = asm.RAX
	rcx = asm.RCX
	rdx = asm.RDX
	rbx = asm.RBX
	rsp = asm.RSP
	rbp = asm.RBP
	rsi = asm.RSI
	rdi = asm.RDI
	r8  = asm.R8
	r9  = asm.R9
	r10 = asm.R10
	r11 = asm.R11
	r12 = asm.R12
	r13 = asm.R13
	r14 = asm.R14
	r15 = asm.R15

	ccB  = asm.CCB
	ccAE = asm.CCAE
	ccE  = asm.CCE
	ccNE = asm.CCNE
	ccA  = asm.CCA
	ccS  = asm.CCS
)
