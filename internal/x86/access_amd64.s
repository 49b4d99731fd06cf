#include "textflag.h"

// func cpuid(leaf, sub uint32) (a, b, c, d uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, a+8(FP)
	MOVL BX, b+12(FP)
	MOVL CX, c+16(FP)
	MOVL DX, d+20(FP)
	RET

// func xgetbv0() (lo, hi uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, lo+0(FP)
	MOVL DX, hi+4(FP)
	RET

// func load1(p unsafe.Pointer) uint8
TEXT ·load1(SB), NOSPLIT, $0-9
	MOVQ p+0(FP), AX
	MOVB (AX), BX
	MOVB BX, ret+8(FP)
	RET

// func load2(p unsafe.Pointer) uint16
TEXT ·load2(SB), NOSPLIT, $0-10
	MOVQ p+0(FP), AX
	MOVW (AX), BX
	MOVW BX, ret+8(FP)
	RET

// func load4(p unsafe.Pointer) uint32
TEXT ·load4(SB), NOSPLIT, $0-12
	MOVQ p+0(FP), AX
	MOVL (AX), BX
	MOVL BX, ret+8(FP)
	RET

// func load8(p unsafe.Pointer) uint64
TEXT ·load8(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ (AX), BX
	MOVQ BX, ret+8(FP)
	RET

// func store1(p unsafe.Pointer, v uint8)
TEXT ·store1(SB), NOSPLIT, $0-9
	MOVQ p+0(FP), AX
	MOVB v+8(FP), BX
	MOVB BX, (AX)
	RET

// func store2(p unsafe.Pointer, v uint16)
TEXT ·store2(SB), NOSPLIT, $0-10
	MOVQ p+0(FP), AX
	MOVW v+8(FP), BX
	MOVW BX, (AX)
	RET

// func store4(p unsafe.Pointer, v uint32)
TEXT ·store4(SB), NOSPLIT, $0-12
	MOVQ p+0(FP), AX
	MOVL v+8(FP), BX
	MOVL BX, (AX)
	RET

// func store8(p unsafe.Pointer, v uint64)
TEXT ·store8(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

// func copy16(dst, src unsafe.Pointer)
// One 16-byte load from src and one 16-byte store to dst.
TEXT ·copy16(SB), NOSPLIT, $0-16
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVOU (SI), X0
	MOVOU X0, (DI)
	RET

// func copy32(dst, src unsafe.Pointer)
TEXT ·copy32(SB), NOSPLIT, $0-16
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	VMOVDQU (SI), Y0
	VMOVDQU Y0, (DI)
	VZEROUPPER
	RET

// func copy64(dst, src unsafe.Pointer)
TEXT ·copy64(SB), NOSPLIT, $0-16
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	VMOVDQU64 (SI), Z0
	VMOVDQU64 Z0, (DI)
	VZEROUPPER
	RET

// func cas1(p unsafe.Pointer, old, new uint8) bool
TEXT ·cas1(SB), NOSPLIT, $0-17
	MOVQ p+0(FP), BX
	MOVB old+8(FP), AX
	MOVB new+9(FP), CX
	LOCK
	CMPXCHGB CX, (BX)
	SETEQ ret+16(FP)
	RET

// func cas2(p unsafe.Pointer, old, new uint16) bool
TEXT ·cas2(SB), NOSPLIT, $0-17
	MOVQ p+0(FP), BX
	MOVW old+8(FP), AX
	MOVW new+10(FP), CX
	LOCK
	CMPXCHGW CX, (BX)
	SETEQ ret+16(FP)
	RET

// func cas4(p unsafe.Pointer, old, new uint32) bool
TEXT ·cas4(SB), NOSPLIT, $0-17
	MOVQ p+0(FP), BX
	MOVL old+8(FP), AX
	MOVL new+12(FP), CX
	LOCK
	CMPXCHGL CX, (BX)
	SETEQ ret+16(FP)
	RET

// func cas8(p unsafe.Pointer, old, new uint64) bool
TEXT ·cas8(SB), NOSPLIT, $0-25
	MOVQ p+0(FP), BX
	MOVQ old+8(FP), AX
	MOVQ new+16(FP), CX
	LOCK
	CMPXCHGQ CX, (BX)
	SETEQ ret+24(FP)
	RET
